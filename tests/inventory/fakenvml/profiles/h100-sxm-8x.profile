# DGX H100 / HGX H100 8-GPU node: H100 SXM5 80GB (PCI 10de:2330), CC 9.0, 132 SMs x 128 FP32 cores,
# max SM clock 1980 MHz, 700 W, 81559 MiB usable HBM3 (nvidia-smi on driver 550), MIG capable (off).
driver 550.54.15
nvml 12.550.54.15
cuda 12040

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-6513270e-269e-4d37-b2a7-4de452e6b438
  pci 0x233010DE
  bus 00000000:18:00.0
  brand 14
  memory 85520809984   # 81559 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 700000
  cores 16896
  mig_mode 0
  max_mig 7

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-d23f0824-128b-4f33-8c5c-7fd0a6a3a450
  pci 0x233010DE
  bus 00000000:2A:00.0
  brand 14
  memory 85520809984   # 81559 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 700000
  cores 16896
  mig_mode 0
  max_mig 7

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-9531985d-5d9d-49f8-9818-e811892f902b
  pci 0x233010DE
  bus 00000000:3A:00.0
  brand 14
  memory 85520809984   # 81559 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 700000
  cores 16896
  mig_mode 0
  max_mig 7

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-36f675cc-81e7-4ef5-a8e2-5d940ed90475
  pci 0x233010DE
  bus 00000000:5D:00.0
  brand 14
  memory 85520809984   # 81559 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 700000
  cores 16896
  mig_mode 0
  max_mig 7

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-6b0d549b-6f03-475a-9600-a35a099950d8
  pci 0x233010DE
  bus 00000000:9A:00.0
  brand 14
  memory 85520809984   # 81559 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 700000
  cores 16896
  mig_mode 0
  max_mig 7

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-8d116ece-1738-47d9-bd9c-172411e20b8f
  pci 0x233010DE
  bus 00000000:AB:00.0
  brand 14
  memory 85520809984   # 81559 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 700000
  cores 16896
  mig_mode 0
  max_mig 7

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-90c192cf-d3ac-44af-8f21-ddb66cad4a26
  pci 0x233010DE
  bus 00000000:BA:00.0
  brand 14
  memory 85520809984   # 81559 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 700000
  cores 16896
  mig_mode 0
  max_mig 7

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-a170b338-3926-4059-b28c-105d1fb17c23
  pci 0x233010DE
  bus 00000000:DB:00.0
  brand 14
  memory 85520809984   # 81559 MiB
  cc 9.0
  max_sm_clock 1980
  power_limit_mw 700000
  cores 16896
  mig_mode 0
  max_mig 7
