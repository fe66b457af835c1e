# The lab's resources: a private network for the cluster, one security group for the
# public ports, three (or four, with a GPU) instances and one floating IP on node1.

locals {
  gpu_enabled = var.gpu_reservation != null && var.gpu_reservation != ""

  # Every node, the optional GPU node included, with its private address.
  all_nodes = merge(var.nodes, local.gpu_enabled ? { "gpu-node" = var.gpu_node_ip } : {})

  # The ports the lab opens on the floating IP (CONTRIBUTING.md has the same table).
  public_ports = {
    ssh            = 22
    live-app       = 80
    production-app = 8082
    canary-app     = 8080
    staging-app    = 8081
    mlflow         = 8000
    minio-console  = 9001
    grafana        = 3000
    argocd-ui      = 8888
    argo-workflows = 2746
    # The Kubernetes API: the notebooks run kubectl and argo from the Jupyter server,
    # outside the cluster, with a kubeconfig that points at https://<floating ip>:6443.
    kubernetes-api = 6443
  }

  # cloud-init appends the node names to /etc/hosts so the nodes find each other by name.
  hosts_block = join("", [for name, ip in local.all_nodes : "${ip} ${name}\n"])
  user_data = join("\n", ["#cloud-config", yamlencode({
    write_files = [{ path = "/etc/hosts", append = true, content = local.hosts_block }]
  })])
}

# ---- private network: node-to-node traffic (Kubernetes, etcd, pod overlay) ----------

resource "openstack_networking_network_v2" "private" {
  name = "private-net-mlops-${var.suffix}"
  # No security groups inside the cluster: Calico and kube-proxy need many ports between
  # nodes, and nothing outside the project can reach this network.
  port_security_enabled = false
}

resource "openstack_networking_subnet_v2" "private" {
  name       = "private-subnet-mlops-${var.suffix}"
  network_id = openstack_networking_network_v2.private.id
  cidr       = var.private_cidr
  # No gateway, so the default route stays on sharednet1 (the way out to the internet).
  no_gateway = true
}

resource "openstack_networking_port_v2" "private" {
  for_each              = local.all_nodes
  name                  = "port-${each.key}-mlops-${var.suffix}"
  network_id            = openstack_networking_network_v2.private.id
  port_security_enabled = false

  fixed_ip {
    subnet_id  = openstack_networking_subnet_v2.private.id
    ip_address = each.value
  }
}

# ---- security group: exactly the public ports of the lab -------------------------------

resource "openstack_networking_secgroup_v2" "lab" {
  name        = "mlops-lab-${var.suffix}"
  description = "GourmetGram MLOps lab: SSH, the app environments, MLflow, MinIO, Argo and the Kubernetes API"
}

resource "openstack_networking_secgroup_rule_v2" "lab_ingress" {
  for_each          = local.public_ports
  description       = each.key
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value
  port_range_max    = each.value
  remote_ip_prefix  = var.allowed_cidr
  security_group_id = openstack_networking_secgroup_v2.lab.id
}

# Each node's port on the shared network; the security group filters what comes in.
resource "openstack_networking_port_v2" "sharednet1" {
  for_each           = local.all_nodes
  name               = "sharednet1-${each.key}-mlops-${var.suffix}"
  network_id         = data.openstack_networking_network_v2.sharednet1.id
  security_group_ids = [openstack_networking_secgroup_v2.lab.id]

  fixed_ip {
    subnet_id = data.openstack_networking_subnet_v2.sharednet1.id
  }
}

# ---- instances ---------------------------------------------------------------------------

resource "openstack_compute_instance_v2" "node" {
  for_each = local.all_nodes
  name     = "${each.key}-mlops-${var.suffix}"
  image_id = each.key == "gpu-node" ? data.openstack_images_image_v2.gpu[0].id : data.openstack_images_image_v2.cpu.id
  # A Blazar flavor reservation creates a private flavor whose id is the reservation id;
  # booting with that flavor places the instance on the reserved capacity. (Host
  # reservations would use a scheduler hint instead; flavor reservations do not need one.)
  flavor_id = each.key == "gpu-node" ? var.gpu_reservation : var.reservation
  key_pair  = var.key
  user_data = local.user_data

  # The first network holds the default route: sharednet1.
  network {
    port = openstack_networking_port_v2.sharednet1[each.key].id
  }

  network {
    port = openstack_networking_port_v2.private[each.key].id
  }
}

# ---- floating IP: the one public address of the lab, on node1 -----------------------

resource "openstack_networking_floatingip_v2" "node1" {
  pool        = "public"
  description = "MLOps lab node1 for ${var.suffix}"
  port_id     = openstack_networking_port_v2.sharednet1["node1"].id
  # The instance must exist before its port can be reached through the address.
  depends_on = [openstack_compute_instance_v2.node]
}
