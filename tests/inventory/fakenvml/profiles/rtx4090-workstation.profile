# Workstation with one GeForce RTX 4090 (PCI 10de:2684), CC 8.9, 128 SMs x 128 cores, max SM clock 3105 MHz,
# 450 W, 24564 MiB GDDR6X, brand GeForce (5); consumer driver.
driver 560.35.03
nvml 12.560.35.03
cuda 12060

device
  name NVIDIA GeForce RTX 4090
  uuid GPU-7f150524-34b9-45df-9e77-69b10f4205b4
  pci 0x268410DE
  bus 00000000:01:00.0
  brand 5
  memory 25757220864   # 24564 MiB
  cc 8.9
  max_sm_clock 3105
  power_limit_mw 450000
  cores 16384
  mig_mode -1
  max_mig 0
