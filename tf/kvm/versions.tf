# Which Terraform and which provider this configuration was written for.
# The provider version is pinned exactly (not "~>") so every student gets the same
# plugin; versions.yml at the repository root holds the same number and
# tests/test_terraform.py checks that the two agree.
terraform {
  required_version = ">= 1.9.0"

  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "3.4.0"
    }
  }
}
