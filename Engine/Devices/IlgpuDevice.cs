using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Devices;

/// <summary>
/// Our ILGPU kernels on one accelerator: CUDA, OpenCL, or ILGPU's CPU accelerator (a debugger for the kernels,
/// far too slow to serve users). Kernels are compiled once per op family, on first use.
/// </summary>
public sealed class IlgpuDevice : ComputeDevice
{
    readonly Context context;
    readonly bool ownsContext;
    readonly Dictionary<Type, object> kernels = [];

    public Accelerator Accelerator { get; }
    public override string Name => Accelerator.Name;
    public override DeviceKind Kind { get; }
    public override long MemoryBytes => Accelerator.MemorySize;
    /// <summary>The context was built with profiling: streams take ILGPU profiling markers (device events).</summary>
    public bool Profiling => context.Properties.EnableProfiling;

    public IlgpuDevice(Context context, Device device, bool ownsContext = false)
    {
        this.context = context;
        this.ownsContext = ownsContext;
        Accelerator = device.CreateAccelerator(context);
        Kind = device.AcceleratorType switch
        {
            AcceleratorType.Cuda => DeviceKind.Cuda,
            AcceleratorType.OpenCL => DeviceKind.OpenCL,
            _ => DeviceKind.IlgpuCpu,
        };
    }

    /// <summary>
    /// ILGPU's CPU accelerator, for tests and kernel debugging. With <paramref name="gpuSizedGroups"/> it simulates
    /// 256 threads per group, so the tiled kernel versions run as on a real GPU; each simulated thread is an OS
    /// thread, so barrier-heavy tiles are slow there (fc6's tiled GEMM alone takes minutes). Without it, ILGPU's
    /// default 16-thread groups run the naive versions, fast enough for a whole VGG16 at 32x32.
    /// </summary>
    protected override string? PrecisionRefusal(Precision p) => Precisions.WhyNot(p, Accelerator);

    /// <param name="profiling">Build the context with profiling, so the profiler can record device events.</param>
    public static IlgpuDevice OpenCpuAccelerator(bool gpuSizedGroups = false, bool profiling = false)
    {
        var ctx = gpuSizedGroups ? Accelerators.CreateCpuSimulatorContext(profiling)
            : Context.Create(b => { b.DefaultCPU().EnableAlgorithms(); if (profiling) b.Profiling(); });
        return new IlgpuDevice(ctx, ctx.GetCPUDevice(0), ownsContext: true);
    }

    public override string Describe() => DeviceCatalog.Describe(Accelerator.Device);

    public override DeviceTensor Allocate(long length)
    {
        try
        {
            return new GpuTensor(Accelerator.Allocate1D<float>(Math.Max(1, length)), 0, length);
        }
        catch (Exception e) when (e is AcceleratorException or OutOfMemoryException or InvalidOperationException)
        {
            throw new InsufficientMemoryException(
                $"{Name}: cannot allocate {4 * length >> 20} MiB ({e.Message}); use a smaller --batch", e);
        }
    }

    // ILGPU's span overloads keep the host memory pinned until the stream has synchronised. Its ref overloads do not,
    // and OpenCL copies asynchronously from another thread (non-blocking clEnqueue{Write,Read}Buffer): a managed array
    // the GC moved meanwhile lost the data (seen on PoCL as zeros downloaded).
    public override void Upload(DeviceTensor destination, ReadOnlySpan<float> source)
    {
        Check.Length("upload", source.Length, destination.Length, Name);
        if (source.Length == 0) return;
        View(destination).CopyFromCPU(Accelerator.DefaultStream, source);
    }

    public override void Download(DeviceTensor source, Span<float> destination)
    {
        Check.Length("download", destination.Length, source.Length, Name);
        if (destination.Length == 0) return;
        View(source).CopyToCPU(Accelerator.DefaultStream, destination);
        Accelerator.Synchronize();
    }

    public override void Synchronize() => Accelerator.Synchronize();

    public override void Clear(DeviceTensor tensor)
    {
        if (tensor.Length > 0) View(tensor).MemSetToZero(Accelerator.DefaultStream);
    }

    public override void Copy(DeviceTensor destination, DeviceTensor source)
    {
        Check.Length("copy destination", destination.Length, source.Length, Name);
        if (source.Length > 0) View(source).CopyTo(Accelerator.DefaultStream, View(destination));
    }

    /// <summary>
    /// An op family's compiled kernels on this accelerator (e.g. <see cref="Conv2dGpu"/>), created on first use with
    /// <paramref name="create"/> and kept for the device's lifetime: kernels are never compiled on the hot path.
    /// </summary>
    public T Kernels<T>(Func<Accelerator, T> create) where T : class
    {
        lock (kernels)
        {
            if (kernels.TryGetValue(typeof(T), out var k)) return (T)k;
            var made = create(Accelerator);
            kernels[typeof(T)] = made;
            return made;
        }
    }

    /// <summary>The accelerator view of a tensor (what the ops' ILGPU launchers take).</summary>
    public static ArrayView<float> View(DeviceTensor t) => t is GpuTensor g
        ? g.Buffer.View.SubView(g.Offset, g.Length)
        : throw new ArgumentException("tensor belongs to another device than this ILGPU accelerator");

    /// <summary>The dense 1-D view of a tensor (what ILGPU's page-locked copies take).</summary>
    internal static ArrayView1D<float, Stride1D.Dense> DenseView(DeviceTensor t) => t is GpuTensor g
        ? g.Buffer.View.SubView(g.Offset, g.Length)
        : throw new ArgumentException("tensor belongs to another device than this ILGPU accelerator");

    public override void Dispose()
    {
        foreach (var k in kernels.Values) (k as IDisposable)?.Dispose();
        kernels.Clear();
        Accelerator.Dispose();
        if (ownsContext) context.Dispose();
        base.Dispose();
    }

    sealed class GpuTensor : DeviceTensor
    {
        readonly bool owner;
        public MemoryBuffer1D<float, Stride1D.Dense> Buffer { get; }
        public GpuTensor(MemoryBuffer1D<float, Stride1D.Dense> buffer, long offset, long length, bool owner = true) : base(offset, length)
        {
            Buffer = buffer;
            this.owner = owner;
        }
        public override DeviceTensor Slice(long offset, long length) { CheckSlice(offset, length); return new GpuTensor(Buffer, Offset + offset, length, owner: false); }
        public override void Dispose() { if (owner) Buffer.Dispose(); }
    }
}
