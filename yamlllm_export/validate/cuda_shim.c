/* A stand-in for the CUDA libraries that onnxruntime-gpu's CUDA provider links against, so that the provider
 * loads on a machine without a GPU and ORT can *create* a session with CUDAExecutionProvider: graph
 * partitioning, fusions, Memcpy insertion and the CUDA kernels' constructors all run. Nothing here computes:
 * a session created under this shim must never run (validate/placement.py only reads ORT's placement report).
 *
 * One source, compiled once per library name (libcudart.so.13, libcublas.so.13, ...) with a version script that
 * exports that library's symbols under the version node the provider was linked against
 * (validate/placement.py writes them). Every call succeeds; the device reports itself as one sm_90 GPU with
 * 80 GiB, so ORT's kernel selection sees a Hopper-class card. "Device" memory is host memory (malloc), because
 * ORT copies initializers to the device while the session is created.
 *
 * No CUDA header is needed: the few structures and enum values used are declared below, with the layout of
 * CUDA 13's driver_types.h (checked once with offsetof against the real header; the fields after
 * sharedMemPerBlockOptin are left zero).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cudaDeviceProp up to sharedMemPerBlockOptin (CUDA 13 layout); ORT passes a full-size structure. */
struct shim_device_prop {
    char name[256];
    unsigned char uuid[16];
    char luid[8];
    unsigned int luid_device_node_mask;
    size_t total_global_mem;
    size_t shared_mem_per_block;
    int regs_per_block;
    int warp_size;
    size_t mem_pitch;
    int max_threads_per_block;
    int max_threads_dim[3];
    int max_grid_size[3];
    size_t total_const_mem;
    int major;
    int minor;
    size_t texture_alignment;
    size_t texture_pitch_alignment;
    int multi_processor_count;
    int integrated;
    int can_map_host_memory;
    int texture_and_surface_limits[39]; /* maxTexture1D .. maxSurfaceCubemapLayered[2] */
    size_t surface_alignment;
    int concurrent_kernels;
    int ecc_enabled;
    int pci_bus_id;
    int pci_device_id;
    int pci_domain_id;
    int tcc_driver;
    int async_engine_count;
    int unified_addressing;
    int memory_bus_width;
    int l2_cache_size;
    int persisting_l2_cache_max_size;
    int max_threads_per_multi_processor;
    int stream_priorities_supported;
    int global_l1_cache_supported;
    int local_l1_cache_supported;
    size_t shared_mem_per_multiprocessor;
    int regs_per_multiprocessor;
    int managed_memory;
    int is_multi_gpu_board;
    int multi_gpu_board_group_id;
    int host_native_atomic_supported;
    int pageable_memory_access;
    int concurrent_managed_access;
    int compute_preemption_supported;
    int can_use_host_pointer_for_registered_mem;
    int cooperative_launch;
    size_t shared_mem_per_block_optin;
};

/* cudaDeviceAttr values (driver_types.h) the provider asks for */
enum {
    ATTR_MAX_THREADS_PER_BLOCK = 1,
    ATTR_MAX_SHARED_MEMORY_PER_BLOCK = 8,
    ATTR_WARP_SIZE = 10,
    ATTR_MULTI_PROCESSOR_COUNT = 16,
    ATTR_MAX_THREADS_PER_MULTI_PROCESSOR = 39,
    ATTR_COMPUTE_CAPABILITY_MAJOR = 75,
    ATTR_COMPUTE_CAPABILITY_MINOR = 76,
    ATTR_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81,
    ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
    ATTR_MEMORY_POOLS_SUPPORTED = 115,
};

#define SHIM_SM_MAJOR 9
#define SHIM_SM_MINOR 0
#define SHIM_SMS 132
#define SHIM_SHARED_PER_BLOCK 49152
#define SHIM_SHARED_OPTIN 232448
#define SHIM_SHARED_PER_SM 233472
#define SHIM_MEMORY ((size_t)80 << 30)

/* opaque handles (streams, events, pools, library handles): distinct non-null addresses */
static char handles[256];

/* ---- calls that only have to succeed: int f(...) { return 0; } (cudaSuccess, CUBLAS_STATUS_SUCCESS, ...) ---- */
#define SUCCEED(name) \
    int name(void) { return 0; }

/* libcudart.so.13 */
SUCCEED(__cudaGetKernel)
SUCCEED(__cudaLaunchKernel)
SUCCEED(__cudaPopCallConfiguration)
SUCCEED(__cudaPushCallConfiguration)
SUCCEED(__cudaRegisterFatBinaryEnd)
SUCCEED(__cudaRegisterFunction)
SUCCEED(__cudaRegisterVar)
SUCCEED(__cudaUnregisterFatBinary)
SUCCEED(cudaDeviceSynchronize)
SUCCEED(cudaEventDestroy)
SUCCEED(cudaEventElapsedTime)
SUCCEED(cudaEventRecord)
SUCCEED(cudaEventRecordWithFlags)
SUCCEED(cudaEventSynchronize)
SUCCEED(cudaFuncGetAttributes)
SUCCEED(cudaFuncSetAttribute)
SUCCEED(cudaGetLastError)
SUCCEED(cudaGraphDestroy)
SUCCEED(cudaGraphExecDestroy)
SUCCEED(cudaGraphInstantiate)
SUCCEED(cudaGraphLaunch)
SUCCEED(cudaKernelSetAttributeForDevice)
SUCCEED(cudaLaunchCooperativeKernel)
SUCCEED(cudaLaunchHostFunc)
SUCCEED(cudaLaunchKernel)
SUCCEED(cudaLaunchKernelExC)
SUCCEED(cudaLibraryGetKernel)
SUCCEED(cudaLibraryLoadData)
SUCCEED(cudaLibraryUnload)
SUCCEED(cudaMemPoolDestroy)
SUCCEED(cudaMemPoolGetAttribute)
SUCCEED(cudaMemPoolSetAttribute)
SUCCEED(cudaMemPoolTrimTo)
SUCCEED(cudaMemcpy2DAsync)
SUCCEED(cudaMemcpyFromSymbol)
SUCCEED(cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags)
SUCCEED(cudaPeekAtLastError)
SUCCEED(cudaSetDevice)
SUCCEED(cudaStreamBeginCapture)
SUCCEED(cudaStreamDestroy)
SUCCEED(cudaStreamEndCapture)
SUCCEED(cudaStreamSynchronize)
SUCCEED(cudaStreamWaitEvent)
SUCCEED(cudaFree)
SUCCEED(cudaFreeHost)
SUCCEED(cudaFreeAsync)

/* libcublas.so.13 */
SUCCEED(cublasDestroy_v2)
SUCCEED(cublasDgeam)
SUCCEED(cublasDgemmBatched)
SUCCEED(cublasDgemmStridedBatched)
SUCCEED(cublasDgemm_v2)
SUCCEED(cublasDgetrfBatched)
SUCCEED(cublasDgetriBatched)
SUCCEED(cublasGemmBatchedEx)
SUCCEED(cublasGemmEx)
SUCCEED(cublasGemmStridedBatchedEx)
SUCCEED(cublasGetMathMode)
SUCCEED(cublasScopy_v2)
SUCCEED(cublasSetMathMode)
SUCCEED(cublasSetStream_v2)
SUCCEED(cublasSgeam)
SUCCEED(cublasSgemmBatched)
SUCCEED(cublasSgemmStridedBatched)
SUCCEED(cublasSgemm_v2)
SUCCEED(cublasSgetrfBatched)
SUCCEED(cublasSgetriBatched)
SUCCEED(cublasSscal_v2)

/* libcublasLt.so.13 */
SUCCEED(cublasLtDestroy)
SUCCEED(cublasLtMatmul)
SUCCEED(cublasLtMatmulAlgoConfigSetAttribute)
SUCCEED(cublasLtMatmulAlgoGetHeuristic)
SUCCEED(cublasLtMatmulAlgoInit)
SUCCEED(cublasLtMatmulDescCreate)
SUCCEED(cublasLtMatmulDescDestroy)
SUCCEED(cublasLtMatmulDescSetAttribute)
SUCCEED(cublasLtMatmulPreferenceCreate)
SUCCEED(cublasLtMatmulPreferenceDestroy)
SUCCEED(cublasLtMatmulPreferenceSetAttribute)
SUCCEED(cublasLtMatrixLayoutCreate)
SUCCEED(cublasLtMatrixLayoutDestroy)
SUCCEED(cublasLtMatrixLayoutSetAttribute)
SUCCEED(cublasLtMatrixTransform)
SUCCEED(cublasLtMatrixTransformDescCreate)
SUCCEED(cublasLtMatrixTransformDescDestroy)

/* libcudnn.so.9 (the TensorRT provider links it; listing kernels loads that provider too) */
SUCCEED(cudnnDestroy)
SUCCEED(cudnnSetStream)

/* libcuda.so.1 (the driver): only the TMA descriptor encoder is linked */
SUCCEED(cuTensorMapEncodeTiled)

/* libnvinfer.so.10 / libnvonnxparser.so.10: no TensorRT engine is ever built */
void *createInferBuilder_INTERNAL(void) { return NULL; }
void *createInferRefitter_INTERNAL(void) { return NULL; }
void *createInferRuntime_INTERNAL(void) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
int getInferLibVersion(void) { return 101300; }
void *createNvOnnxParser_INTERNAL(void) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void) { return NULL; }
int getNvOnnxParserVersion(void) { return 101300; }

/* libcurand.so.10: linked, never called; a library needs at least one symbol */
int shim_curand_present(void) { return 1; }

/* ---- calls with results ---- */

int cudaGetDeviceCount(int *count) {
    if (count) *count = 1;
    return 0;
}

int cudaGetDevice(int *device) {
    if (device) *device = 0;
    return 0;
}

int cudaGetDeviceProperties(struct shim_device_prop *prop, int device) {
    (void)device;
    if (!prop) return 0;
    memset(prop, 0, sizeof(*prop));
    strcpy(prop->name, "yamlllm-export CUDA shim (no GPU)");
    prop->total_global_mem = SHIM_MEMORY;
    prop->shared_mem_per_block = SHIM_SHARED_PER_BLOCK;
    prop->regs_per_block = 65536;
    prop->warp_size = 32;
    prop->max_threads_per_block = 1024;
    prop->max_threads_dim[0] = 1024;
    prop->max_threads_dim[1] = 1024;
    prop->max_threads_dim[2] = 64;
    prop->max_grid_size[0] = 2147483647;
    prop->max_grid_size[1] = 65535;
    prop->max_grid_size[2] = 65535;
    prop->total_const_mem = 65536;
    prop->major = SHIM_SM_MAJOR;
    prop->minor = SHIM_SM_MINOR;
    prop->multi_processor_count = SHIM_SMS;
    prop->concurrent_kernels = 1;
    prop->unified_addressing = 1;
    prop->l2_cache_size = 50 << 20;
    prop->max_threads_per_multi_processor = 2048;
    prop->shared_mem_per_multiprocessor = SHIM_SHARED_PER_SM;
    prop->regs_per_multiprocessor = 65536;
    prop->shared_mem_per_block_optin = SHIM_SHARED_OPTIN;
    return 0;
}

int cudaDeviceGetAttribute(int *value, int attr, int device) {
    (void)device;
    if (!value) return 0;
    switch (attr) {
    case ATTR_MAX_THREADS_PER_BLOCK: *value = 1024; break;
    case ATTR_MAX_SHARED_MEMORY_PER_BLOCK: *value = SHIM_SHARED_PER_BLOCK; break;
    case ATTR_WARP_SIZE: *value = 32; break;
    case ATTR_MULTI_PROCESSOR_COUNT: *value = SHIM_SMS; break;
    case ATTR_MAX_THREADS_PER_MULTI_PROCESSOR: *value = 2048; break;
    case ATTR_COMPUTE_CAPABILITY_MAJOR: *value = SHIM_SM_MAJOR; break;
    case ATTR_COMPUTE_CAPABILITY_MINOR: *value = SHIM_SM_MINOR; break;
    case ATTR_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: *value = SHIM_SHARED_PER_SM; break;
    case ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *value = SHIM_SHARED_OPTIN; break;
    case ATTR_MEMORY_POOLS_SUPPORTED: *value = 1; break;
    default: *value = 0; break;
    }
    return 0;
}

int cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    if (free_bytes) *free_bytes = SHIM_MEMORY - ((size_t)1 << 30);
    if (total_bytes) *total_bytes = SHIM_MEMORY;
    return 0;
}

int cudaRuntimeGetVersion(int *version) {
    if (version) *version = 13000;
    return 0;
}

int cudaDriverGetVersion(int *version) {
    if (version) *version = 13000;
    return 0;
}

/* Device memory is host memory, never freed: ORT copies initializers in while the session is created, and the
 * process ends right after (a session under the shim never runs). */
int cudaMalloc(void **ptr, size_t size) {
    if (ptr) *ptr = malloc(size ? size : 1);
    return ptr && *ptr ? 0 : 2; /* 2: cudaErrorMemoryAllocation */
}

int cudaMallocHost(void **ptr, size_t size) { return cudaMalloc(ptr, size); }

int cudaHostAlloc(void **ptr, size_t size, unsigned int flags) {
    (void)flags;
    return cudaMalloc(ptr, size);
}

int cudaMallocFromPoolAsync(void **ptr, size_t size, void *pool, void *stream) {
    (void)pool;
    (void)stream;
    return cudaMalloc(ptr, size);
}

int cudaMemcpy(void *dst, const void *src, size_t count, int kind) {
    (void)kind;
    if (dst && src && count) memmove(dst, src, count);
    return 0;
}

int cudaMemcpyAsync(void *dst, const void *src, size_t count, int kind, void *stream) {
    (void)stream;
    return cudaMemcpy(dst, src, count, kind);
}

int cudaMemset(void *dst, int value, size_t count) {
    if (dst && count) memset(dst, value, count);
    return 0;
}

int cudaMemsetAsync(void *dst, int value, size_t count, void *stream) {
    (void)stream;
    return cudaMemset(dst, value, count);
}

int cudaStreamCreate(void **stream) {
    if (stream) *stream = &handles[8];
    return 0;
}

int cudaStreamCreateWithFlags(void **stream, unsigned int flags) {
    (void)flags;
    if (stream) *stream = &handles[16];
    return 0;
}

int cudaStreamIsCapturing(void *stream, int *status) {
    (void)stream;
    if (status) *status = 0; /* cudaStreamCaptureStatusNone */
    return 0;
}

int cudaEventCreate(void **event) {
    if (event) *event = &handles[24];
    return 0;
}

int cudaEventCreateWithFlags(void **event, unsigned int flags) {
    (void)flags;
    if (event) *event = &handles[32];
    return 0;
}

int cudaMemPoolCreate(void **pool, const void *props) {
    (void)props;
    if (pool) *pool = &handles[40];
    return 0;
}

/* cudaPointerAttributes: {type, device, devicePointer, hostPointer, reserved[8]}; type 0 = unregistered memory */
int cudaPointerGetAttributes(void *attributes, const void *ptr) {
    (void)ptr;
    if (attributes) memset(attributes, 0, 2 * sizeof(int) + 2 * sizeof(void *) + 8 * sizeof(long));
    return 0;
}

void **__cudaRegisterFatBinary(void *fat_cubin) {
    (void)fat_cubin;
    return (void **)&handles[64];
}

/* no driver entry points: callers fall back (status 1 = cudaDriverEntryPointSymbolNotFound) */
int cudaGetDriverEntryPointByVersion(const char *symbol, void **func, unsigned int version, unsigned long long flags, int *status) {
    (void)symbol;
    (void)version;
    (void)flags;
    if (func) *func = NULL;
    if (status) *status = 1;
    return 0;
}

const char *cudaGetErrorString(int error) {
    (void)error;
    return "yamlllm-export CUDA shim: no GPU";
}

const char *cudaGetErrorName(int error) {
    (void)error;
    return "yamlllmShimNoGpu";
}

int cublasCreate_v2(void **handle) {
    if (handle) *handle = &handles[96];
    return 0;
}

const char *cublasGetStatusName(int status) {
    (void)status;
    return "yamlllmShimNoGpu";
}

const char *cublasGetStatusString(int status) {
    (void)status;
    return "yamlllm-export CUDA shim: no GPU";
}

int cublasLtCreate(void **handle) {
    if (handle) *handle = &handles[128];
    return 0;
}

int cudnnCreate(void **handle) {
    if (handle) *handle = &handles[160];
    return 0;
}
