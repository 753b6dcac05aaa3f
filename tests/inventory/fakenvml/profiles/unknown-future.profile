# A future part the catalog does not know (a fictional name and PCI id on values shaped like a Blackwell Ultra
# board, which the catalog now holds as B300): CC 10.3, 160 SMs x 128 cores, max SM clock 2032 MHz, 1100 W.
driver 580.65.06
nvml 13.580.65.06
cuda 13000

device
  name NVIDIA X300 SXM7
  uuid GPU-5790f82e-c1d3-4cff-aa3a-f4d46b0a18e8
  pci 0x3FF010DE
  bus 00000000:1B:00.0
  brand 14
  memory 288400343040   # 275040 MiB
  cc 10.3
  max_sm_clock 2032
  power_limit_mw 1100000
  cores 20480
  mig_mode 0
  max_mig 7
