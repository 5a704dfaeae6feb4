//! `paved/quota`: the team's environments after the pull request, against its quota; and a
//! name another team's live environment holds, which is not the team's to take.
use super::evaluation::{Evaluation, Read};
use super::{Change, ChangeKind, CheckKind, CheckOutcome};
use crate::diag::Diagnostic;
use crate::manifest::FieldPath;

impl Evaluation<'_> {
    pub(super) fn quota(&self, change: &Change, read: &Read, runs_schema: bool) -> CheckOutcome {
        let check = CheckKind::Quota;
        let Some(mp) = &read.path else {
            return CheckOutcome::new(
                check,
                self.not_evaluated(
                    change,
                    read,
                    runs_schema,
                    "not an environments/<team>/<name>.yaml path",
                ),
                Vec::new(),
            );
        };
        let Some(platform) = self.gov.platform() else {
            return CheckOutcome::new(check, self.gov.errors(), Vec::new());
        };
        let Some(team) = platform.teams.get(mp.team.as_str()) else {
            return CheckOutcome::new(
                check,
                self.not_evaluated(
                    change,
                    read,
                    runs_schema,
                    &format!("team {:?} is not defined", mp.team),
                ),
                Vec::new(),
            );
        };
        // An environment is more than its name (SPEC 12): a name another team's environment
        // still holds (it is live: its delete has not succeeded) is not this team's to use.
        if change.kind != ChangeKind::Deleted {
            if let Some((holder, _)) = self
                .ctx
                .live
                .iter()
                .find(|(t, names)| **t != mp.team && names.contains(mp.name.as_str()))
            {
                let msg = format!(
                    "environment name {} is held by team {holder}, whose environment of that name still exists (its delete has not succeeded): choose another name",
                    mp.name
                );
                let d = match &read.manifest {
                    Some(m) => m.diag_path(&FieldPath::parse("metadata.name"), msg),
                    None => Diagnostic::new(&change.path, msg),
                };
                return CheckOutcome::new(check, vec![d], Vec::new());
            }
        }
        let Some(quota) = team.quota else {
            return CheckOutcome::new(check, Vec::new(), Vec::new());
        };
        let on_branch = match self.branch_team_names(&mp.team) {
            Ok(n) => n,
            Err(d) => return CheckOutcome::new(check, vec![d], Vec::new()),
        };
        let grows = match change.kind {
            ChangeKind::Added => true,
            ChangeKind::Modified => !on_branch.contains(mp.name.as_str()),
            ChangeKind::Deleted => false,
        };
        let count = self.count_after(&mp.team).unwrap_or(on_branch.len());
        let limit = quota.environments as usize;
        if grows && count > limit {
            let msg = format!(
                "team {} would have {count} environments, over its quota of {limit} (.paved/platform.yaml teams.{}.quota.environments)",
                mp.team, mp.team
            );
            let d = match &read.manifest {
                Some(m) => m.diag_path(&FieldPath::parse("metadata.team"), msg),
                None => Diagnostic::new(&change.path, msg),
            };
            return CheckOutcome::new(check, vec![d], Vec::new());
        }
        CheckOutcome::new(check, Vec::new(), Vec::new())
    }
}
