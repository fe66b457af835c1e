# The OpenStack provider reads its credentials from clouds.yaml (copied from
# clouds.yaml.template and filled in; git ignores the real file). "openstack" is the
# name of the entry inside clouds.yaml, not the name of the site.
provider "openstack" {
  cloud = "openstack"
}
