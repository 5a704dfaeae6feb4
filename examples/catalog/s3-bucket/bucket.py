"""One S3 bucket, with the credentials of the run's deploy identity.

Nothing here names a credential: boto3's default chain reads AWS_ROLE_ARN and
AWS_WEB_IDENTITY_TOKEN_FILE (set by Paved) and assumes the role with the run's token.
"""
import json
import os
import sys

import boto3


def main(operation: str) -> None:
    params = json.loads(os.environ.get("ADE_OPERATION_PARAMETERS") or "{}")
    bucket = params["bucket"]
    who = boto3.client("sts").get_caller_identity()["Arn"]
    print(f"{operation} as {who}")
    s3 = boto3.client("s3")
    if operation == "deploy":
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        print(f"bucket {bucket} is ready")
        outputs = {
            "outputs": {
                "bucket": {"type": "string", "value": bucket, "sensitive": False},
                "deployedAs": {"type": "string", "value": who, "sensitive": False},
            }
        }
        with open(os.environ["ADE_OUTPUTS"], "w", encoding="utf-8") as f:
            json.dump(outputs, f)
    elif operation == "delete":
        s3.delete_bucket(Bucket=bucket)
        print(f"bucket {bucket} is gone")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as e:  # the error's one line reaches the deployment status and the note
        with open(os.environ["ADE_ERROR_LOG"], "a", encoding="utf-8") as f:
            f.write(f"{type(e).__name__}: {e}\n")
        raise
