/*
 * A fake libnvidia-ml.so.1 for gpuquota's tests: the NVML entry points the real pynvml bindings call during
 * discovery, answering from a device-profile text file named by $FAKE_NVML_PROFILE (read at every init, so a
 * test can "reconfigure MIG" by rewriting the file). Built by a pytest fixture with gcc into a temp dir.
 *
 * Profile format: one "key value" per line, '#' starts a comment. Global keys (driver, nvml, cuda) come first
 * (init_error, count_error: anywhere); "device" starts a GPU, "mig" a MIG device of the last GPU. Device keys:
 * name uuid pci bus brand memory cc max_sm_clock power_limit_mw cores mig_mode(-1 unsupported|0|1) max_mig
 * handle_error error (code returned by every query) and "fail <function> <code>" (one function only).
 * MIG keys: name uuid gi ci slices ci_slices sms memory_mb slot error.
 * Handles are pointers to this file's structs, as NVML's are opaque pointers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
enum {
    OK = 0, UNINITIALIZED = 1, INVALID_ARGUMENT = 2, NOT_SUPPORTED = 3, NO_PERMISSION = 4, NOT_FOUND = 6,
    INSUFFICIENT_SIZE = 7, DRIVER_NOT_LOADED = 9, GPU_IS_LOST = 15, UNKNOWN = 999
};

#define MAX_DEVICES 16
#define MAX_MIG 8
#define MAX_FAILS 8
#define STR 96

struct fail { char fn[64]; int code; };

struct mig {
    int is_mig; /* first field of both structs: tells a MIG handle from a GPU handle */
    char name[STR], uuid[STR];
    unsigned gi, ci, slices, ci_slices, sms, slot;
    unsigned long long memory_mb;
    int error;
};

struct device {
    int is_mig;
    char name[STR], uuid[STR], bus[32];
    unsigned pci, brand, max_sm_clock, power_limit_mw, cores, cc_major, cc_minor, max_mig;
    unsigned long long memory;
    int mig_mode, handle_error, error, nfails, nmig;
    struct fail fails[MAX_FAILS];
    struct mig migs[MAX_MIG];
};

static struct {
    char driver[STR], nvml[STR];
    int cuda, init_error, count_error, ndev, initialised;
    struct device devices[MAX_DEVICES];
} P;

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
}

static void copy(char *dst, const char *src) { snprintf(dst, STR, "%s", src); }

static unsigned long long num(const char *s) { return strtoull(s, NULL, 0); }

static int load_profile(void) {
    const char *path = getenv("FAKE_NVML_PROFILE");
    FILE *f = path ? fopen(path, "r") : NULL;
    char line[512];
    struct device *d = NULL;
    struct mig *m = NULL;
    memset(&P, 0, sizeof P);
    if (!f) return DRIVER_NOT_LOADED;
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#'), *key = line, *val;
        if (hash) *hash = 0;
        trim(line);
        while (*key == ' ' || *key == '\t') key++;
        if (!*key) continue;
        val = key;
        while (*val && *val != ' ' && *val != '\t') val++;
        if (*val) *val++ = 0;
        while (*val == ' ' || *val == '\t') val++;

        if (!strcmp(key, "init_error")) P.init_error = (int)num(val); /* global keys: anywhere in the file */
        else if (!strcmp(key, "count_error")) P.count_error = (int)num(val);
        else if (!strcmp(key, "device")) {
            if (P.ndev == MAX_DEVICES) break;
            d = &P.devices[P.ndev++];
            d->mig_mode = -1;
            m = NULL;
        } else if (!strcmp(key, "mig") && d) {
            if (d->nmig == MAX_MIG) continue;
            m = &d->migs[d->nmig];
            m->is_mig = 1;
            m->slot = (unsigned)d->nmig++;
        } else if (m) {
            if (!strcmp(key, "name")) copy(m->name, val);
            else if (!strcmp(key, "uuid")) copy(m->uuid, val);
            else if (!strcmp(key, "gi")) m->gi = (unsigned)num(val);
            else if (!strcmp(key, "ci")) m->ci = (unsigned)num(val);
            else if (!strcmp(key, "slices")) m->slices = (unsigned)num(val);
            else if (!strcmp(key, "ci_slices")) m->ci_slices = (unsigned)num(val);
            else if (!strcmp(key, "sms")) m->sms = (unsigned)num(val);
            else if (!strcmp(key, "memory_mb")) m->memory_mb = num(val);
            else if (!strcmp(key, "slot")) m->slot = (unsigned)num(val);
            else if (!strcmp(key, "error")) m->error = (int)num(val);
        } else if (d) {
            if (!strcmp(key, "name")) copy(d->name, val);
            else if (!strcmp(key, "uuid")) copy(d->uuid, val);
            else if (!strcmp(key, "bus")) snprintf(d->bus, sizeof d->bus, "%.31s", val);
            else if (!strcmp(key, "pci")) d->pci = (unsigned)num(val);
            else if (!strcmp(key, "brand")) d->brand = (unsigned)num(val);
            else if (!strcmp(key, "memory")) d->memory = num(val);
            else if (!strcmp(key, "cc")) sscanf(val, "%u.%u", &d->cc_major, &d->cc_minor);
            else if (!strcmp(key, "max_sm_clock")) d->max_sm_clock = (unsigned)num(val);
            else if (!strcmp(key, "power_limit_mw")) d->power_limit_mw = (unsigned)num(val);
            else if (!strcmp(key, "cores")) d->cores = (unsigned)num(val);
            else if (!strcmp(key, "mig_mode")) d->mig_mode = atoi(val);
            else if (!strcmp(key, "max_mig")) d->max_mig = (unsigned)num(val);
            else if (!strcmp(key, "handle_error")) d->handle_error = (int)num(val);
            else if (!strcmp(key, "error")) d->error = (int)num(val);
            else if (!strcmp(key, "fail") && d->nfails < MAX_FAILS) {
                struct fail *fl = &d->fails[d->nfails++];
                if (sscanf(val, "%63s %d", fl->fn, &fl->code) != 2) d->nfails--;
            }
        } else {
            if (!strcmp(key, "driver")) copy(P.driver, val);
            else if (!strcmp(key, "nvml")) copy(P.nvml, val);
            else if (!strcmp(key, "cuda")) P.cuda = (int)num(val);
        }
    }
    fclose(f);
    return P.init_error;
}

/* The error a query on this handle returns, or OK: a whole-device error first, then a per-function one. */
static int check(void *handle, const char *fn) {
    struct device *d;
    if (!P.initialised) return UNINITIALIZED;
    if (!handle) return INVALID_ARGUMENT;
    if (*(int *)handle) {
        struct mig *m = handle;
        return m->error;
    }
    d = handle;
    if (d->error) return d->error;
    for (int i = 0; i < d->nfails; i++)
        if (!strcmp(d->fails[i].fn, fn)) return d->fails[i].code;
    return OK;
}

static nvmlReturn_t put_string(char *buf, unsigned len, const char *s) {
    if (!buf) return INVALID_ARGUMENT;
    if (strlen(s) + 1 > len) return INSUFFICIENT_SIZE;
    strcpy(buf, s);
    return OK;
}

nvmlReturn_t nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    int rc = load_profile();
    P.initialised = rc == OK;
    return rc;
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlShutdown(void) {
    if (!P.initialised) return UNINITIALIZED;
    P.initialised = 0;
    return OK;
}

const char *nvmlErrorString(nvmlReturn_t rc) {
    switch (rc) {
    case OK: return "Success";
    case UNINITIALIZED: return "Uninitialized";
    case INVALID_ARGUMENT: return "Invalid Argument";
    case NOT_SUPPORTED: return "Not Supported";
    case NO_PERMISSION: return "Insufficient Permissions";
    case NOT_FOUND: return "Not Found";
    case INSUFFICIENT_SIZE: return "Insufficient Size";
    case DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *buf, unsigned len) {
    return P.initialised ? put_string(buf, len, P.driver) : UNINITIALIZED;
}
nvmlReturn_t nvmlSystemGetNVMLVersion(char *buf, unsigned len) {
    return P.initialised ? put_string(buf, len, P.nvml) : UNINITIALIZED;
}
nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) {
    if (!P.initialised) return UNINITIALIZED;
    *v = P.cuda;
    return OK;
}
nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return nvmlSystemGetCudaDriverVersion(v); }

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
    if (!P.initialised) return UNINITIALIZED;
    if (P.count_error) return P.count_error;
    *count = (unsigned)P.ndev;
    return OK;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned *count) { return nvmlDeviceGetCount_v2(count); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, void **handle) {
    if (!P.initialised) return UNINITIALIZED;
    if (index >= (unsigned)P.ndev || !handle) return INVALID_ARGUMENT;
    if (P.devices[index].handle_error) return P.devices[index].handle_error;
    *handle = &P.devices[index];
    return OK;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, void **handle) {
    return nvmlDeviceGetHandleByIndex_v2(index, handle);
}

nvmlReturn_t nvmlDeviceGetIndex(void *h, unsigned *index) {
    int rc = check(h, "nvmlDeviceGetIndex");
    if (rc) return rc;
    if (*(int *)h) return INVALID_ARGUMENT;
    *index = (unsigned)((struct device *)h - P.devices);
    return OK;
}

nvmlReturn_t nvmlDeviceGetName(void *h, char *buf, unsigned len) {
    int rc = check(h, "nvmlDeviceGetName");
    if (rc) return rc;
    return put_string(buf, len, *(int *)h ? ((struct mig *)h)->name : ((struct device *)h)->name);
}

nvmlReturn_t nvmlDeviceGetUUID(void *h, char *buf, unsigned len) {
    int rc = check(h, "nvmlDeviceGetUUID");
    if (rc) return rc;
    return put_string(buf, len, *(int *)h ? ((struct mig *)h)->uuid : ((struct device *)h)->uuid);
}

nvmlReturn_t nvmlDeviceGetBrand(void *h, int *brand) {
    int rc = check(h, "nvmlDeviceGetBrand");
    if (rc) return rc;
    if (*(int *)h) return NOT_SUPPORTED;
    *brand = (int)((struct device *)h)->brand;
    return OK;
}

/* nvmlPciInfo_t as in nvml.h since 9.0: legacy 16-byte bus id, ids, then the 32-byte bus id. */
typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

nvmlReturn_t nvmlDeviceGetPciInfo_v3(void *h, nvmlPciInfo_t *pci) {
    int rc = check(h, "nvmlDeviceGetPciInfo_v3");
    struct device *d = h;
    if (rc) return rc;
    if (d->is_mig) return NOT_SUPPORTED;
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busId, sizeof pci->busId, "%.31s", d->bus);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%.15s", d->bus);
    sscanf(d->bus, "%x:%x:%x", &pci->domain, &pci->bus, &pci->device);
    pci->pciDeviceId = d->pci;
    return OK;
}
nvmlReturn_t nvmlDeviceGetPciInfo_v2(void *h, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(h, pci); }
nvmlReturn_t nvmlDeviceGetPciInfo(void *h, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(h, pci); }

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;

static unsigned long long memory_of(void *h) {
    return *(int *)h ? ((struct mig *)h)->memory_mb << 20 : ((struct device *)h)->memory;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(void *h, nvmlMemory_t *mem) {
    int rc = check(h, "nvmlDeviceGetMemoryInfo");
    if (rc) return rc;
    mem->total = memory_of(h);
    mem->used = 0;
    mem->free = mem->total;
    return OK;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(void *h, nvmlMemory_v2_t *mem) {
    int rc = check(h, "nvmlDeviceGetMemoryInfo_v2");
    if (rc) return rc;
    mem->total = memory_of(h);
    mem->reserved = 0;
    mem->used = 0;
    mem->free = mem->total;
    return OK;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(void *h, int *major, int *minor) {
    int rc = check(h, "nvmlDeviceGetCudaComputeCapability");
    if (rc) return rc;
    if (*(int *)h) return NOT_SUPPORTED;
    *major = (int)((struct device *)h)->cc_major;
    *minor = (int)((struct device *)h)->cc_minor;
    return OK;
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(void *h, int type, unsigned *clock) {
    int rc = check(h, "nvmlDeviceGetMaxClockInfo");
    if (rc) return rc;
    if (*(int *)h) return NOT_SUPPORTED;
    if (type != 1) return NOT_SUPPORTED; /* only NVML_CLOCK_SM is in a profile */
    *clock = ((struct device *)h)->max_sm_clock;
    return OK;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(void *h, unsigned *limit) {
    int rc = check(h, "nvmlDeviceGetPowerManagementLimit");
    if (rc) return rc;
    if (*(int *)h) return NOT_SUPPORTED;
    *limit = ((struct device *)h)->power_limit_mw;
    return OK;
}

nvmlReturn_t nvmlDeviceGetNumGpuCores(void *h, unsigned *cores) {
    int rc = check(h, "nvmlDeviceGetNumGpuCores");
    if (rc) return rc;
    if (*(int *)h || !((struct device *)h)->cores) return NOT_SUPPORTED;
    *cores = ((struct device *)h)->cores;
    return OK;
}

nvmlReturn_t nvmlDeviceGetMigMode(void *h, unsigned *current, unsigned *pending) {
    int rc = check(h, "nvmlDeviceGetMigMode");
    struct device *d = h;
    if (rc) return rc;
    if (d->is_mig || d->mig_mode < 0) return NOT_SUPPORTED;
    *current = *pending = (unsigned)d->mig_mode;
    return OK;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(void *h, unsigned *count) {
    int rc = check(h, "nvmlDeviceGetMaxMigDeviceCount");
    struct device *d = h;
    if (rc) return rc;
    if (d->is_mig || d->mig_mode < 0) return NOT_SUPPORTED;
    *count = d->max_mig;
    return OK;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(void *h, unsigned index, void **mig) {
    int rc = check(h, "nvmlDeviceGetMigDeviceHandleByIndex");
    struct device *d = h;
    if (rc) return rc;
    if (d->is_mig || d->mig_mode < 0) return NOT_SUPPORTED;
    if (index >= d->max_mig) return INVALID_ARGUMENT;
    if (d->mig_mode != 1) return NOT_FOUND;
    for (int i = 0; i < d->nmig; i++)
        if (d->migs[i].slot == index) {
            *mig = &d->migs[i];
            return OK;
        }
    return NOT_FOUND;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(void *h, unsigned *is_mig) {
    if (!P.initialised) return UNINITIALIZED;
    *is_mig = (unsigned)*(int *)h;
    return OK;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(void *h, unsigned *id) {
    int rc = check(h, "nvmlDeviceGetGpuInstanceId");
    if (rc) return rc;
    if (!*(int *)h) return INVALID_ARGUMENT;
    *id = ((struct mig *)h)->gi;
    return OK;
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(void *h, unsigned *id) {
    int rc = check(h, "nvmlDeviceGetComputeInstanceId");
    if (rc) return rc;
    if (!*(int *)h) return INVALID_ARGUMENT;
    *id = ((struct mig *)h)->ci;
    return OK;
}

typedef struct {
    unsigned multiprocessorCount, sharedCopyEngineCount, sharedDecoderCount, sharedEncoderCount,
        sharedJpegCount, sharedOfaCount, gpuInstanceSliceCount, computeInstanceSliceCount;
    unsigned long long memorySizeMB;
} nvmlDeviceAttributes_t;

/* As on real drivers: answers for MIG device handles only. */
nvmlReturn_t nvmlDeviceGetAttributes_v2(void *h, nvmlDeviceAttributes_t *a) {
    int rc = check(h, "nvmlDeviceGetAttributes_v2");
    struct mig *m = h;
    if (rc) return rc;
    if (!m->is_mig) return NOT_SUPPORTED;
    memset(a, 0, sizeof *a);
    a->multiprocessorCount = m->sms;
    a->gpuInstanceSliceCount = m->slices;
    a->computeInstanceSliceCount = m->ci_slices ? m->ci_slices : m->slices;
    a->memorySizeMB = m->memory_mb;
    a->sharedCopyEngineCount = m->slices;
    return OK;
}
nvmlReturn_t nvmlDeviceGetAttributes(void *h, nvmlDeviceAttributes_t *a) { return nvmlDeviceGetAttributes_v2(h, a); }
