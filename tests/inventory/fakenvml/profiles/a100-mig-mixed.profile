# 2x A100 SXM4 80GB (PCI 10de:20b2), CC 8.0, 108 SMs x 64 FP32 cores, max SM clock 1410 MHz, 400 W, 81920 MiB.
# GPU 0 in MIG mode, mixed strategy: one 3g.40gb (42 SMs, 40192 MiB) and two 2g.20gb (28 SMs, 19968 MiB each),
# as `nvidia-smi mig -lgip` lists them on an A100 80GB; GPU 1 has MIG off.
driver 550.54.15
nvml 12.550.54.15
cuda 12040

device
  name NVIDIA A100-SXM4-80GB
  uuid GPU-6b4cb242-4a23-4596-a217-beaddbc496cb
  pci 0x20B210DE
  bus 00000000:07:00.0
  brand 14
  memory 85899345920   # 81920 MiB
  cc 8.0
  max_sm_clock 1410
  power_limit_mw 400000
  cores 6912
  mig_mode 1
  max_mig 7

  mig
    name NVIDIA A100-SXM4-80GB MIG 3g.40gb
    uuid MIG-0fd630f1-f29d-4da9-953f-48f1a09f76b5
    gi 2
    ci 0
    slices 3
    sms 42
    memory_mb 40192
  mig
    name NVIDIA A100-SXM4-80GB MIG 2g.20gb
    uuid MIG-0cb1e29c-658c-4a14-95e6-0af593bd04cf
    gi 3
    ci 0
    slices 2
    sms 28
    memory_mb 19968
  mig
    name NVIDIA A100-SXM4-80GB MIG 2g.20gb
    uuid MIG-8e81973e-0bec-47b0-b898-d190f9ebdacc
    gi 5
    ci 0
    slices 2
    sms 28
    memory_mb 19968

device
  name NVIDIA A100-SXM4-80GB
  uuid GPU-92276658-1e27-41c0-8a6a-63ec24ede6a4
  pci 0x20B210DE
  bus 00000000:0F:00.0
  brand 14
  memory 85899345920   # 81920 MiB
  cc 8.0
  max_sm_clock 1410
  power_limit_mw 400000
  cores 6912
  mig_mode 0
  max_mig 7
