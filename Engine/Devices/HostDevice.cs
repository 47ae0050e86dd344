using Tp7.Engine.Kernels;

namespace Tp7.Engine.Devices;

/// <summary>The SIMD host backend (--device cpu): the host twins of Engine.Kernels on all cores.</summary>
public sealed class HostDevice : ComputeDevice
{
    public override string Name { get; } = HostInfo.CpuName();
    public override DeviceKind Kind => DeviceKind.Host;
    public override long MemoryBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    public override string Describe()
        => $"host backend: {Name}, {Environment.ProcessorCount} cores, {HostInfo.SimdDescription()}, {MemoryBytes / (1L << 30)} GiB";

    public override DeviceTensor Allocate(long length)
    {
        if (length > Array.MaxLength)
            throw new InsufficientMemoryException($"host tensor of {length} floats exceeds the .NET array limit; use a smaller batch");
        return new HostTensor(GC.AllocateUninitializedArray<float>((int)length), length);
    }

    public override void Upload(DeviceTensor destination, ReadOnlySpan<float> source)
    {
        Check.Length("upload", source.Length, destination.Length, "host tensor");
        source.CopyTo(Span(destination));
    }

    public override void Download(DeviceTensor source, Span<float> destination)
    {
        Check.Length("download", destination.Length, source.Length, "host tensor");
        Span(source).CopyTo(destination);
    }

    public override void Synchronize() { }

    public override void Conv2d(DeviceTensor y, DeviceTensor x, DeviceTensor w, DeviceTensor b, ConvShape s, bool relu)
        => Kernels.Conv2d.ForwardHost(Span(y), Span(x), Span(w), Span(b), s, relu);

    public override void MaxPool(DeviceTensor y, DeviceTensor x, PoolShape s)
        => Pooling.MaxForwardHost(Span(y), Span(x), s);

    public override void AdaptiveAvgPool(DeviceTensor y, DeviceTensor x, int n, int c, int h, int w, int oh, int ow)
        => Pooling.AdaptiveAvgForwardHost(Span(y), Span(x), n, c, h, w, oh, ow);

    public override void Linear(DeviceTensor y, DeviceTensor x, DeviceTensor w, DeviceTensor b, int n, int inFeatures, int outFeatures, bool relu)
        => Kernels.Linear.ForwardHost(Span(y), Span(x), Span(w), Span(b), n, inFeatures, outFeatures, relu);

    public override void Relu(DeviceTensor y, DeviceTensor x) => Activations.ReluHost(Span(y), Span(x));

    public override void Softmax(DeviceTensor y, DeviceTensor x, int rows, int cols)
        => Activations.SoftmaxHost(Span(y), Span(x), rows, cols);

    static Span<float> Span(DeviceTensor t) => t is HostTensor h
        ? h.Data.AsSpan(0, (int)h.Length)
        : throw new ArgumentException("tensor belongs to another device than the host backend");

    sealed class HostTensor(float[] data, long length) : DeviceTensor(length)
    {
        public float[] Data { get; } = data;
        public override DeviceTensor Prefix(long length) { CheckPrefix(length); return new HostTensor(Data, length); }
        public override void Dispose() { }
    }
}

static class HostInfo
{
    public static string CpuName()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
    }

    public static string SimdDescription()
    {
        var parts = new List<string>();
        if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) parts.Add("AVX-512");
        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) parts.Add("AVX2");
        if (System.Runtime.Intrinsics.X86.Fma.IsSupported) parts.Add("FMA");
        if (System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported) parts.Add("NEON");
        return parts.Count > 0 ? string.Join("+", parts) : $"Vector<float> x{System.Numerics.Vector<float>.Count}";
    }
}
