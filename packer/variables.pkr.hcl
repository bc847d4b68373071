# Inputs of the image build. Only the amazon-ebs sources talk to a cloud; the qemu source builds on this machine from
# the lab's Debian 12 base image (`python -m lab image build debian12`), so its paths have no useful default here and
# `make image` passes them.

# --- amazon-ebs --------------------------------------------------------------------------------------------------

variable "aws_region" {
  type        = string
  description = "Region the builder instance runs in and the AMI is registered in."
  default     = "eu-central-1"
}

variable "aws_instance_type" {
  type        = string
  description = "Instance type of the temporary builder (empty: t3.small for x86_64, t4g.small for arm64). The image does not depend on it: workers are sized at boot."
  default     = ""
}

variable "aws_architecture" {
  type        = string
  description = "CPU architecture of the AMI: x86_64, or arm64 (Graviton). The base AMI filter and the builder type follow it."
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.aws_architecture)
    error_message = "The aws_architecture value must be x86_64 or arm64."
  }
}

variable "ami_regions" {
  type        = list(string)
  description = "Regions the finished AMI is copied to, besides aws_region (each copy is a separate AMI id)."
  default     = []
}

variable "aws_subnet_id" {
  type        = string
  description = "Subnet of the builder instance (empty: the region's default VPC)."
  default     = ""
}

variable "aws_root_volume_size_gb" {
  type        = number
  description = "Size of the encrypted gp3 root volume of the builder and of the AMI, in GiB."
  default     = 8
}

variable "aws_kms_key_id" {
  type        = string
  description = "KMS key that encrypts the root volume and the AMI's snapshot (empty: the account's default EBS key)."
  default     = ""
}

variable "aws_distribution" {
  type        = string
  description = "The distribution the amazon-ebs source bakes: a key of aws_source_amis (debian12, ubuntu2404)."
  default     = "debian12"
}

variable "aws_source_amis" {
  type = map(object({
    owners       = list(string)
    name         = string
    ssh_username = string
    root_device  = string
  }))
  description = <<-EOT
    The base AMI of each distribution, found by filter (the newest match wins): the AMI owner accounts, the name
    pattern ({arch} becomes amd64 or arm64, the distributions' names for aws_architecture), the distribution's default login user and the AMI's root device name (the encrypted gp3 volume replaces
    that device). Override an entry to pin an older release or a private AMI.
  EOT
  default = {
    # Debian's official cloud team account.
    debian12 = {
      owners       = ["136693071363"]
      name         = "debian-12-{arch}-*"
      ssh_username = "admin"
      root_device  = "/dev/xvda"
    }
    # Canonical's account.
    ubuntu2404 = {
      owners       = ["099720109477"]
      name         = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"
      ssh_username = "ubuntu"
      root_device  = "/dev/sda1"
    }
  }
}

variable "ami_name_prefix" {
  type        = string
  description = "AMI names are PREFIX-DIST-TIMESTAMP (UTC, YYYYMMDDhhmmss), so every build registers a new, sortable name."
  default     = "gunicorn-flask"
}

variable "ami_tags" {
  type        = map(string)
  description = "Extra tags of the AMI and its snapshot, merged over the build's own (Name, Distribution, Built-By, ...)."
  default     = {}
}

# --- qemu (local image from the lab's base) ------------------------------------------------------------------------

variable "lab_image_dir" {
  type        = string
  description = "Directory of the lab's Debian 12 base image: disk.qcow2, vmlinuz and initrd.img (`python -m lab image path debian12`)."
  default     = ".cache/lab/images/debian12"
}

variable "lab_ssh_key" {
  type        = string
  description = "Private key whose public half the lab baked into the base image for root (the lab's id_ed25519)."
  default     = ".cache/lab/id_ed25519"
}

variable "qemu_output_dir" {
  type        = string
  description = "Where the qcow2 lands; Packer refuses to start when it exists (`make image` moves the old one aside)."
  default     = ".cache/packer/debian12"
}

variable "qemu_accelerator" {
  type        = string
  description = "kvm where KVM really runs guests, else tcg (software emulation, 5-8x slower; `make image` probes)."
  default     = "tcg"
}

variable "qemu_cpu_model" {
  type        = string
  description = "QEMU -cpu model: host with kvm, max with tcg."
  default     = "max"
}

variable "qemu_cpus" {
  type        = number
  description = "vCPUs of the build VM. Baked into nothing: the service counts the cores when it starts."
  default     = 2
}

variable "qemu_memory_mib" {
  type        = number
  description = "Memory of the build VM in MiB."
  default     = 2048
}

variable "qemu_serial_log" {
  type        = string
  description = "File that receives the build VM's serial console (the only witness of a boot that never reaches SSH)."
  default     = ".cache/packer/build-serial.log"
}

# --- provisioning ----------------------------------------------------------------------------------------------

variable "repo_root" {
  type        = string
  description = "The suite's checkout (playbooks/, roles/, ansible.cfg). Empty: the parent of this directory."
  default     = ""
}

variable "meinheld_wheel" {
  type        = string
  description = <<-EOT
    A patched Meinheld wheel on this machine, built for the image's Python (`make meinheld-wheel`), baked in as the
    server role's server_meinheld_source instead of compiling Meinheld in the builder. Empty: the builder compiles it
    (the AMI sources, whose architecture and Python need not match this machine's). `make image` sets it.
  EOT
  default     = ""
}

variable "ansible_extra_arguments" {
  type        = list(string)
  description = "Extra ansible-playbook arguments, e.g. [\"--extra-vars\", \"@my-apps.yml\"] to bake other apps than the example."
  default     = []
}

variable "ansible_known_hosts_file" {
  type        = string
  description = <<-EOT
    The known_hosts file of this build's Ansible connections: the machine's host key is recorded at the first
    connection and checked at every later one. Its directory must exist. Empty: packer-known-hosts-TIMESTAMP in the
    working directory, new for each build. `make image` puts it in the build's work directory.
  EOT
  default     = ""
}

variable "manifest_path" {
  type        = string
  description = "Where the manifest post-processor records each build's artifact (AMI id per region, or the qcow2)."
  default     = "packer-manifest.json"
}
