# HGX H20 8-GPU node (PCI 10de:2329): a cut-down Hopper, CC 9.0, 78 SMs x 128 cores, max SM clock 1980 MHz,
# 500 W, 97871 MiB HBM3 (96 GB), MIG capable (off). The SM formula overstates its tensor throughput: the catalog wins.
driver 550.54.15
nvml 12.550.54.15
cuda 12040

device
  name NVIDIA H20
  uuid GPU-c6f87718-6d76-407e-881e-d162ae2eb154
  pci 0x232910DE
  bus 00000000:18:00.0
  brand 14
  memory 102625181696   # 97871 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 500000
  cores 9984
  mig_mode 0
  max_mig 7

device
  name NVIDIA H20
  uuid GPU-ec66a787-95e7-41d1-b731-af10506bf2ef
  pci 0x232910DE
  bus 00000000:2A:00.0
  brand 14
  memory 102625181696   # 97871 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 500000
  cores 9984
  mig_mode 0
  max_mig 7

device
  name NVIDIA H20
  uuid GPU-3f98e277-4cbd-47ad-9c90-a9587403e430
  pci 0x232910DE
  bus 00000000:3A:00.0
  brand 14
  memory 102625181696   # 97871 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 500000
  cores 9984
  mig_mode 0
  max_mig 7

device
  name NVIDIA H20
  uuid GPU-c7a2ea20-b2f1-4c94-ae05-319acb5c7427
  pci 0x232910DE
  bus 00000000:5D:00.0
  brand 14
  memory 102625181696   # 97871 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 500000
  cores 9984
  mig_mode 0
  max_mig 7

device
  name NVIDIA H20
  uuid GPU-4cdd2055-930d-4eaf-94f4-733f3e7d1bfb
  pci 0x232910DE
  bus 00000000:9A:00.0
  brand 14
  memory 102625181696   # 97871 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 500000
  cores 9984
  mig_mode 0
  max_mig 7

device
  name NVIDIA H20
  uuid GPU-57ee05cd-e009-42c7-bebf-f20686734721
  pci 0x232910DE
  bus 00000000:AB:00.0
  brand 14
  memory 102625181696   # 97871 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 500000
  cores 9984
  mig_mode 0
  max_mig 7

device
  name NVIDIA H20
  uuid GPU-9be4bcfc-49b6-4a08-b2e6-cc3ababced20
  pci 0x232910DE
  bus 00000000:BA:00.0
  brand 14
  memory 102625181696   # 97871 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 500000
  cores 9984
  mig_mode 0
  max_mig 7

device
  name NVIDIA H20
  uuid GPU-830e07bc-1e39-4f10-92bd-4acefaecbd38
  pci 0x232910DE
  bus 00000000:DB:00.0
  brand 14
  memory 102625181696   # 97871 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 500000
  cores 9984
  mig_mode 0
  max_mig 7
