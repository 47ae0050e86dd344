using Tp7.Engine.Kernels;

namespace Tp7.Engine.Devices;

public enum DeviceKind { Host, Cuda, OpenCL, IlgpuCpu }

/// <summary>
/// A backend that owns memory and runs the ops. <see cref="HostDevice"/> runs the SIMD host twins;
/// <see cref="IlgpuDevice"/> runs our ILGPU kernels on CUDA, OpenCL or ILGPU's CPU accelerator.
/// Ops are enqueued in order; <see cref="Download"/> and <see cref="Synchronize"/> wait for them.
/// Argument order of every op: outputs, inputs, dimensions.
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
    public abstract void Synchronize();

    public abstract void Conv2d(DeviceTensor y, DeviceTensor x, DeviceTensor w, DeviceTensor b, ConvShape s, bool relu);
    public abstract void MaxPool(DeviceTensor y, DeviceTensor x, PoolShape s);
    public abstract void AdaptiveAvgPool(DeviceTensor y, DeviceTensor x, int n, int c, int h, int w, int oh, int ow);
    public abstract void Linear(DeviceTensor y, DeviceTensor x, DeviceTensor w, DeviceTensor b, int n, int inFeatures, int outFeatures, bool relu);
    public abstract void Relu(DeviceTensor y, DeviceTensor x);
    public abstract void Softmax(DeviceTensor y, DeviceTensor x, int rows, int cols);

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
/// A float buffer on a device, or a prefix view of one (views do not own memory; disposing them is a no-op).
/// Ops receive views of exactly the length the shape needs, so launchers can check lengths strictly.
/// </summary>
public abstract class DeviceTensor : IDisposable
{
    public long Length { get; }
    protected DeviceTensor(long length) => Length = length;

    /// <summary>A view of the first <paramref name="length"/> elements.</summary>
    public abstract DeviceTensor Prefix(long length);

    protected void CheckPrefix(long length)
    {
        if (length < 0 || length > Length)
            throw new ArgumentOutOfRangeException(nameof(length), $"view of {length} elements on a tensor of {Length}");
    }

    public abstract void Dispose();
}
