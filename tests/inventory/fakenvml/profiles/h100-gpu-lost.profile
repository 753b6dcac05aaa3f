# 4x H100 SXM5 node where GPU 2 has fallen off the bus (Xid 79): NVML returns NVML_ERROR_GPU_IS_LOST (15) for
# its handle; the other three answer normally.
driver 550.54.15
nvml 12.550.54.15
cuda 12040

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-6bf46c69-7d2c-4f82-aeea-cbe226e87555
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
  uuid GPU-13deef86-ab10-41d0-b646-e1f40a097c97
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
  uuid GPU-ca02135e-92b1-43f2-8ede-0d7ac3baea9e
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
  handle_error 15   # NVML_ERROR_GPU_IS_LOST

device
  name NVIDIA H100 80GB HBM3
  uuid GPU-57124242-5051-41cc-917f-9acae01f5057
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
