# What the next steps need: the public address (Ansible's jump host) and the private ones.

output "floating_ip_out" {
  description = "Floating IP of node1: SSH jump host, web UIs and the Kubernetes API"
  value       = openstack_networking_floatingip_v2.node1.address
}

output "private_ips" {
  description = "Private address of every node, as used in the Ansible inventories"
  value       = { for name, port in openstack_networking_port_v2.private : name => port.all_fixed_ips[0] }
}

output "node1_sharednet1_ip" {
  description = "node1's own address on sharednet1: the floating IP is translated to it"
  value       = openstack_networking_port_v2.sharednet1["node1"].all_fixed_ips[0]
}
