using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

// ILGPU emits launchers into a dynamic assembly named ILGPURuntime; the kernel argument structs are internal.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("ILGPURuntime")]

namespace Tp7.Engine.Kernels;

/// <summary>
/// Launch geometry shared by the op families, and the ILGPU CPU device the tests simulate a GPU on.
/// </summary>
public static class Accelerators
{
    /// <summary>
    /// Threads per group of the tiled kernels (GEMM, implicit-GEMM convolution): 16 x 16 threads, each
    /// computing a 4 x 4 register block of a 64 x 64 output tile (V2) or an 8 x 8 block of a 128 x 128 tile (V3).
    /// </summary>
    public const int TiledGroupSize = 256;

    /// <summary>Group size of the element-wise and reduction kernels on a real GPU.</summary>
    public const int DefaultGroupSize = 256;

    /// <summary>
    /// A CPU-simulated GPU with one multiprocessor of 8 warps of 32 threads = 256 threads per group: the
    /// smallest device on which every kernel here (tiled ones need 256) runs, with NVIDIA's warp size.
    /// ILGPU's <see cref="CPUDeviceKind.Default"/> allows only 16 threads per group, and
    /// <see cref="CPUDeviceKind.Nvidia"/> starts 1024 OS threads per launch, which makes barrier-heavy
    /// tiles several times slower on a small CPU for no extra coverage.
    /// </summary>
    public static CPUDevice CpuSimulatorDevice() => new(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 8, numMultiprocessors: 1);

    /// <summary>A context with only the CPU simulator above (algorithms enabled); dispose it after the accelerator.</summary>
    public static Context CreateCpuSimulatorContext(bool profiling = false)
        => Context.Create(b => { b.CPU(CpuSimulatorDevice()).EnableAlgorithms(); if (profiling) b.Profiling(); });

    /// <summary>Largest power of two not above <paramref name="wanted"/> that the accelerator allows per group.</summary>
    internal static int GroupSize(Accelerator acc, int wanted)
    {
        int limit = Math.Min(wanted, acc.MaxNumThreadsPerGroup);
        int g = 1;
        while (g * 2 <= limit) g *= 2;
        return g;
    }

    /// <summary>
    /// A grid-stride launch for <paramref name="count"/> independent items: enough groups to fill the device
    /// several times over, never more than the items need. Kernels loop with 64-bit indices, so tensors above
    /// 2^31 elements work.
    /// </summary>
    internal static KernelConfig GridStride(Accelerator acc, long count, int groupSize)
    {
        long needed = (count + groupSize - 1) / groupSize;
        long fill = Math.Max(1L, (long)acc.NumMultiprocessors * Math.Max(1, acc.MaxNumThreadsPerMultiprocessor / groupSize) * 8);
        int groups = (int)Math.Max(1L, Math.Min(needed, fill));
        return new KernelConfig(groups, groupSize);
    }

    /// <summary>
    /// Whether a kernel may read <paramref name="view"/> 4 floats at a time at offsets that are multiples of 4 along
    /// rows <paramref name="rowStride"/> apart: the view starts at a multiple of 4 elements of its buffer (buffers
    /// themselves are at least 16-byte aligned) and the row stride is a multiple of 4.
    /// </summary>
    internal static bool Vector4Aligned(ArrayView<float> view, long rowStride)
        => rowStride % 4 == 0 && ((IContiguousArrayView)view).Index % 4 == 0;

    /// <summary>Throws when a tiled kernel cannot run on this accelerator, naming the limit.</summary>
    internal static void RequireTiledGroup(Accelerator acc, string op)
    {
        if (acc.MaxNumThreadsPerGroup < TiledGroupSize)
            throw new NotSupportedException(
                $"{op}: the tiled kernel needs {TiledGroupSize} threads per group but '{acc.Name}' allows {acc.MaxNumThreadsPerGroup}; " +
                "use the V1Naive version or a device such as Accelerators.CpuSimulatorDevice()");
    }
}

/// <summary>
/// Compiles every ILGPU kernel of the op families to PTX without a GPU or CUDA driver (ILGPU's PTX backend is pure
/// .NET), so a machine without a GPU can check that each kernel is expressible for NVIDIA hardware. Register and
/// occupancy figures come only from ptxas/the driver, which are not needed here and not reported.
/// </summary>
public static class KernelPtx
{
    /// <summary>The kernels (explicitly grouped, loaded with LoadStreamKernel) of each op-family class.</summary>
    public static IReadOnlyList<System.Reflection.MethodInfo> AllKernels()
        => new[] { typeof(GemmGpu), typeof(GemmMmaGpu), typeof(Conv2dGpu), typeof(Conv2dMmaGpu), typeof(PoolingGpu), typeof(ActivationsGpu),
                typeof(LinearGpu), typeof(DropoutGpu), typeof(LossGpu), typeof(OptimizersGpu), typeof(ElementwiseGpu),
                typeof(BroadcastGpu), typeof(LayoutGpu) }
            .SelectMany(t => t.GetMethods(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic))
            .Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal))
            .ToList();

    /// <summary>PTX assembly of every kernel for the given architecture (e.g. SM_90 with ISA_80 for the H100).</summary>
    public static IReadOnlyList<(string Kernel, string Ptx)> CompileAll(
        ILGPU.Runtime.Cuda.CudaArchitecture architecture, ILGPU.Runtime.Cuda.CudaInstructionSet instructionSet)
    {
        using var context = Context.Create(b => b.CPU(Accelerators.CpuSimulatorDevice()).EnableAlgorithms());
        // No NVVM: ILGPU generates PTX itself, as it does when loading kernels on a CUDA device.
        using var backend = new ILGPU.Backends.PTX.PTXBackend(context, architecture, instructionSet, nvvmAPI: null!);
        var result = new List<(string, string)>();
        foreach (var kernel in AllKernels())
        {
            var entry = ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
            var compiled = (ILGPU.Backends.PTX.PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
            result.Add(($"{kernel.DeclaringType!.Name}.{kernel.Name}", compiled.PTXAssembly));
        }
        return result;
    }
}
