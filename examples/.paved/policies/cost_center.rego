# Cost centers are written cc-NNNN, so that finance can bill them.
package main

deny contains msg if {
	some key, value in input.spec.tags
	key == "cost-center"
	not regex.match(`^cc-[0-9]{4}$`, value)
	msg := sprintf("tag cost-center %q must look like cc-1234", [value])
}
