# Cloud inference node with 4x NVIDIA L4 (PCI 10de:27b8), CC 8.9 (Ada), 58 SMs x 128 cores, max SM clock 2040 MHz,
# 72 W, 23034 MiB GDDR6; no MIG (NVML answers Not Supported).
driver 550.54.15
nvml 12.550.54.15
cuda 12040

device
  name NVIDIA L4
  uuid GPU-ae97ba94-d0ed-482f-8f6d-05584ef8aa38
  pci 0x27B810DE
  bus 00000000:00:03.0
  brand 14
  memory 24152899584   # 23034 MiB
  cc 8.9
  max_sm_clock 2040
  power_limit_mw 72000
  cores 7424
  mig_mode -1
  max_mig 0

device
  name NVIDIA L4
  uuid GPU-923a7369-94e3-4f91-9a61-dbe22e44158b
  pci 0x27B810DE
  bus 00000000:00:04.0
  brand 14
  memory 24152899584   # 23034 MiB
  cc 8.9
  max_sm_clock 2040
  power_limit_mw 72000
  cores 7424
  mig_mode -1
  max_mig 0

device
  name NVIDIA L4
  uuid GPU-18f135d2-5f55-4203-b018-50c5a38fd547
  pci 0x27B810DE
  bus 00000000:00:05.0
  brand 14
  memory 24152899584   # 23034 MiB
  cc 8.9
  max_sm_clock 2040
  power_limit_mw 72000
  cores 7424
  mig_mode -1
  max_mig 0

device
  name NVIDIA L4
  uuid GPU-907a70c3-1012-4037-b64c-e4228c38fb29
  pci 0x27B810DE
  bus 00000000:00:06.0
  brand 14
  memory 24152899584   # 23034 MiB
  cc 8.9
  max_sm_clock 2040
  power_limit_mw 72000
  cores 7424
  mig_mode -1
  max_mig 0
