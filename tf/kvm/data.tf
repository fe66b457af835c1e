# Things that already exist at KVM@TACC and that this configuration only looks up.

# The shared network gives every node a route to the internet (to install packages and
# pull images) and is where the floating IP is attached.
data "openstack_networking_network_v2" "sharednet1" {
  name = "sharednet1"
}

data "openstack_networking_subnet_v2" "sharednet1" {
  name = "sharednet1-subnet"
}

# Looked up by name so that a typo fails at plan time with a clear message.
data "openstack_images_image_v2" "cpu" {
  name        = var.image_name
  most_recent = true
}

data "openstack_images_image_v2" "gpu" {
  count       = local.gpu_enabled ? 1 : 0
  name        = var.gpu_image_name
  most_recent = true
}
