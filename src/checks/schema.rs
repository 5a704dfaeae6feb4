//! `paved/schema`: reads and parses a manifest of the head tree and checks its format,
//! name, team, type, definition and parameters, and that its name is unique.
use super::evaluation::{Evaluation, Read};
use super::Change;
use crate::diag::Diagnostic;
use crate::manifest::{environment, names, read_text};
use crate::policy;

impl Evaluation<'_> {
    /// Read, parse and schema-check a manifest of the head tree.
    pub(super) fn read(&self, change: &Change) -> Read {
        let mut out = Read {
            path: None,
            manifest: None,
            schema_errors: Vec::new(),
        };
        let mp = match names::parse_manifest_path(&change.path) {
            Ok(p) => p,
            Err(e) => {
                out.schema_errors.push(Diagnostic::new(&change.path, e));
                return out;
            }
        };
        out.path = Some(mp.clone());
        let text = match read_text(self.head, &change.path) {
            Ok(Some(t)) => t,
            Ok(None) => {
                out.schema_errors.push(Diagnostic::new(
                    &change.path,
                    "file not found in the pull request's head",
                ));
                return out;
            }
            Err(d) => {
                out.schema_errors.push(d);
                return out;
            }
        };
        let m = match environment::parse_manifest(&change.path, &text) {
            Ok(m) => m,
            Err(d) => {
                out.schema_errors.push(d);
                return out;
            }
        };
        out.schema_errors
            .extend(environment::check_manifest(&m, Some(&mp)));
        if let Some(platform) = self.gov.platform() {
            out.schema_errors
                .extend(policy::schema_rules(&m, platform, self.gov.catalog()));
            // Its type's deploy identity must exist on this server, or nothing could run.
            let ty = platform.environment_types.get(&m.manifest.spec.env_type);
            if let (Some(known), Some(ty)) = (&self.ctx.identities, ty) {
                for name in [&ty.identity, &ty.plan_identity].into_iter().flatten() {
                    if !known.contains(name) {
                        out.schema_errors.push(m.diag(
                            "spec.type",
                            format!(
                                "environment type {:?} uses identity {name:?}, which this Paved server does not define: nothing of this type can run until the platform team adds it",
                                m.manifest.spec.env_type
                            ),
                        ));
                    }
                }
            }
            // Names are unique across the repository. One lookup per team, so the cost
            // follows the number of teams, not of environments.
            for team in platform.teams.keys().filter(|t| **t != mp.team) {
                let other = format!("environments/{team}/{}.yaml", mp.name);
                if self.head.exists(&other).unwrap_or(false) {
                    out.schema_errors.push(m.diag(
                        "metadata.name",
                        format!(
                            "environment name {:?} is already used by environments/{team}/{}.yaml",
                            mp.name, mp.name
                        ),
                    ));
                }
            }
        }
        out.manifest = Some(m);
        out
    }
}
