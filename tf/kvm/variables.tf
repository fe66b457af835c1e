# Inputs. Set them with TF_VAR_<name> environment variables (the notebooks do) or -var.

variable "suffix" {
  description = "Your project or user suffix, added to every resource name so that names in a shared project do not clash"
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.suffix))
    error_message = "suffix must be 1-31 characters: lower-case letters, digits and '-', starting with a letter or digit."
  }
}

variable "key" {
  description = "Name of the SSH key pair already registered at KVM@TACC; it is installed for the cc user on every node"
  type        = string

  validation {
    condition     = length(trimspace(var.key)) > 0
    error_message = "key must name an existing key pair."
  }
}

variable "nodes" {
  description = "The Kubernetes nodes and their fixed addresses on the private network"
  type        = map(string)
  default = {
    node1 = "192.168.1.11"
    node2 = "192.168.1.12"
    node3 = "192.168.1.13"
  }

  validation {
    condition     = contains(keys(var.nodes), "node1")
    error_message = "nodes must contain node1: it carries the floating IP and the Kubernetes control plane."
  }
}

variable "reservation" {
  description = "Flavor id of the Blazar lease's CPU flavor reservation (the reserved flavor, not m1.medium itself)"
  type        = string

  validation {
    condition     = length(trimspace(var.reservation)) > 0
    error_message = "reservation must be the reserved flavor id from your lease."
  }
}

variable "gpu_reservation" {
  description = "Flavor id of an optional GPU flavor reservation; leave null or empty for a CPU-only cluster"
  type        = string
  default     = null
}

variable "gpu_node_ip" {
  description = "Fixed private address of the optional GPU node"
  type        = string
  default     = "192.168.1.14"
}

variable "private_cidr" {
  description = "Address range of the private network that the nodes use to talk to each other"
  type        = string
  default     = "192.168.1.0/24"
}

variable "image_name" {
  description = "Boot image of the CPU nodes"
  type        = string
  default     = "CC-Ubuntu24.04"
}

variable "gpu_image_name" {
  description = "Boot image of the GPU node: the CUDA variant ships the NVIDIA driver (pre_k8s adds the container toolkit)"
  type        = string
  default     = "CC-Ubuntu24.04-CUDA"
}

variable "allowed_cidr" {
  description = "Addresses allowed to reach the lab's ports on the floating IP; narrow it to your own network if you can"
  type        = string
  default     = "0.0.0.0/0"

  validation {
    condition     = can(cidrnetmask(var.allowed_cidr))
    error_message = "allowed_cidr must be one IPv4 range in CIDR notation, such as 203.0.113.0/24 (0.0.0.0/0 is everyone)."
  }
}
