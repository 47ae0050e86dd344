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
        return new HostTensor(GC.AllocateUninitializedArray<float>((int)length), 0, length);
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

    public override void Clear(DeviceTensor tensor)
    {
        var span = Span(tensor);
        if (span.Length < 1 << 20) { span.Clear(); return; }
        var h = (HostTensor)tensor;
        const int Chunk = 1 << 20;
        Parallel.For(0, (int)((h.Length + Chunk - 1) / Chunk), c =>
        {
            long start = c * (long)Chunk;
            ClearStreaming(h.Data.AsSpan((int)(h.Offset + start), (int)Math.Min(Chunk, h.Length - start)));
        });
    }

    /// <summary>
    /// Zeroes with non-temporal stores: a cleared gradient block (528 MiB for VGG16) is not read again soon, and
    /// streaming stores skip the read for ownership that ordinary stores pay per line. The runtime's memset makes
    /// the same choice only above a size threshold that 4 MiB tasks stay under.
    /// </summary>
    static unsafe void ClearStreaming(Span<float> span)
    {
        if (!System.Runtime.Intrinsics.X86.Avx.IsSupported) { span.Clear(); return; }
        fixed (float* p0 = span)
        {
            float* p = p0, end = p0 + span.Length;
            for (; p < end && ((nint)p & 31) != 0; p++) *p = 0f;
            var z = System.Runtime.Intrinsics.Vector256<float>.Zero;
            for (; p + 32 <= end; p += 32)
            {
                System.Runtime.Intrinsics.X86.Avx.StoreAlignedNonTemporal(p, z);
                System.Runtime.Intrinsics.X86.Avx.StoreAlignedNonTemporal(p + 8, z);
                System.Runtime.Intrinsics.X86.Avx.StoreAlignedNonTemporal(p + 16, z);
                System.Runtime.Intrinsics.X86.Avx.StoreAlignedNonTemporal(p + 24, z);
            }
            for (; p < end; p++) *p = 0f;
            // Streaming stores are weakly ordered: fence before the task ends so other threads see the zeros.
            System.Runtime.Intrinsics.X86.Sse.StoreFence();
        }
    }

    public override void Copy(DeviceTensor destination, DeviceTensor source)
    {
        Check.Length("copy destination", destination.Length, source.Length, "host tensor");
        Span(source).CopyTo(Span(destination));
    }

    /// <summary>The elements of a host tensor (what the ops' host twins read and write).</summary>
    public static Span<float> Span(DeviceTensor t) => t is HostTensor h
        ? h.Data.AsSpan((int)h.Offset, (int)h.Length)
        : throw new ArgumentException("tensor belongs to another device than the host backend");

    sealed class HostTensor(float[] data, long offset, long length) : DeviceTensor(offset, length)
    {
        public float[] Data { get; } = data;
        public override DeviceTensor Slice(long offset, long length) { CheckSlice(offset, length); return new HostTensor(Data, Offset + offset, length); }
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
