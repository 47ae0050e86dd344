namespace Tp7.Engine.Devices;

public enum DeviceKind { Host, Cuda, OpenCL, IlgpuCpu }

/// <summary>
/// A backend: memory, copies, one in-order stream and its synchronisation. Devices do not know the ops: each op
/// (Engine/Graph/Ops) brings its own host and ILGPU implementations and asks the device for spans
/// (<see cref="HostDevice.Span"/>) or views and compiled kernels (<see cref="IlgpuDevice.View"/>,
/// <see cref="IlgpuDevice.Kernels{T}"/>), as ggml's backends do with graph_compute and supports_op.
/// </summary>
public abstract class ComputeDevice : IDisposable
{
    public abstract string Name { get; }
    public abstract DeviceKind Kind { get; }
    /// <summary>Memory the device can give to tensors, in bytes.</summary>
    public abstract long MemoryBytes { get; }
    /// <summary>A one-line description: name, memory, capability.</summary>
    public abstract string Describe();

    public abstract DeviceTensor Allocate(long length);
    public abstract void Upload(DeviceTensor destination, ReadOnlySpan<float> source);
    public abstract void Download(DeviceTensor source, Span<float> destination);
    /// <summary>Sets every element to zero (ZeroGrad of a whole gradient block is one call).</summary>
    public abstract void Clear(DeviceTensor tensor);
    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> on the device (same length).</summary>
    public abstract void Copy(DeviceTensor destination, DeviceTensor source);
    public abstract void Synchronize();

    /// <summary>
    /// What the forward matrix products (convolution, linear, matmul) compute in: fp32 (the default, strict) or, on a
    /// CUDA GPU of compute capability 8.0 or newer, tf32/fp16/bf16 inputs on tensor cores with fp32 accumulation.
    /// The executor hands it to the ops in their <see cref="Graph.OpContext"/>; backward passes stay fp32.
    /// Setting a precision the device cannot run throws, with the reason.
    /// </summary>
    public Tp7.Engine.Kernels.Precision Precision
    {
        get => precision;
        set
        {
            if (PrecisionRefusal(value) is { } why)
                throw new NotSupportedException($"--precision {Tp7.Engine.Kernels.Precisions.Name(value)} needs a CUDA GPU of compute capability 8.0 or newer; {why}");
            precision = value;
        }
    }
    Tp7.Engine.Kernels.Precision precision;

    /// <summary>Why this device cannot compute in <paramref name="p"/>, or null when it can (the host backend: fp32 only).</summary>
    protected virtual string? PrecisionRefusal(Tp7.Engine.Kernels.Precision p) => Tp7.Engine.Kernels.Precisions.WhyNot(p, null);

    public float[] Download(DeviceTensor source)
    {
        var result = new float[source.Length];
        Download(source, result);
        return result;
    }

    public DeviceTensor Upload(ReadOnlySpan<float> source)
    {
        var t = Allocate(source.Length);
        Upload(t, source);
        return t;
    }

    public virtual void Dispose() => GC.SuppressFinalize(this);
}

/// <summary>
/// A float buffer on a device, or a view of a range of one (views do not own memory; disposing them is a no-op).
/// Ops receive views of exactly the length the shape needs, so launchers can check lengths strictly.
/// </summary>
public abstract class DeviceTensor : IDisposable
{
    /// <summary>Elements in this view.</summary>
    public long Length { get; }
    /// <summary>Where the view starts in its buffer, in elements.</summary>
    public long Offset { get; }

    protected DeviceTensor(long offset, long length)
    {
        Offset = offset;
        Length = length;
    }

    /// <summary>A view of <paramref name="length"/> elements starting <paramref name="offset"/> elements into this one.</summary>
    public abstract DeviceTensor Slice(long offset, long length);

    /// <summary>A view of the first <paramref name="length"/> elements.</summary>
    public DeviceTensor Prefix(long length) => Slice(0, length);

    protected void CheckSlice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(length), $"view of [{offset}, {offset + length}) on a tensor of {Length} elements");
    }

    public abstract void Dispose();
}
