# Environments without an expiry live until their manifest is deleted: say so.
package main

warn contains msg if {
	not input.spec.expiresAt
	msg := sprintf("%s has no expiresAt: it lives until its manifest is deleted", [input.metadata.name])
}

# A team close to its quota hears about it before it is full.
warn contains msg if {
	quota := data.paved.team.quota.environments
	data.paved.counts.team_environments == quota
	msg := sprintf("team %s is at its quota of %d environments", [data.paved.team.name, quota])
}
