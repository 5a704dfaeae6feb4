# Large databases are for production.
package main

deny contains msg if {
	input.spec.type == "dev"
	input.spec.parameters.size == "large"
	msg := sprintf("%s: size 'large' is not allowed for dev environments; use 'small' or a prod environment", [input.metadata.name])
}
