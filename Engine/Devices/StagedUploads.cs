using ILGPU;
using ILGPU.Runtime;
using Tp7.Engine.Model;

namespace Tp7.Engine.Devices;

/// <summary>
/// Double-buffered input uploads to an ILGPU accelerator: batch buffers in page-locked host memory (the batch loader
/// decodes straight into them), and a stream of its own that copies batch i+1 to the device while the default stream
/// computes batch i. Page-locked memory is what lets the copy engine run asynchronously: from pageable memory the
/// driver first stages the data through a pinned buffer of its own, synchronously. On ILGPU's CPU accelerator both
/// streams execute at enqueue time: the same calls and results, without overlap.
/// </summary>
/// <remarks>
/// Slot s may be refilled once the forward pass that read it has returned (the pass copies it into its own input slot
/// on the compute stream, and every pass ends with a download that synchronises the device).
/// </remarks>
public sealed class StagedUploads : IDisposable
{
    readonly IlgpuDevice device;
    readonly AcceleratorStream stream;
    readonly object gate = new();
    readonly Dictionary<float[], PageLockedArray1D<float>> pinned = new(ReferenceEqualityComparer.Instance);
    readonly DeviceTensor[] slots;
    readonly long[] lengths = new long[2];
    readonly long capacity;

    /// <param name="capacity">Floats of the largest batch (batch size × one image's tensor).</param>
    public StagedUploads(IlgpuDevice device, long capacity)
    {
        this.device = device;
        this.capacity = capacity;
        stream = device.Accelerator.CreateStream();
        slots = [device.Allocate(capacity), device.Allocate(capacity)];
    }

    /// <summary>Records each upload (on the copy stream's track) when set.</summary>
    public LayerProfiler? Profiler { get; set; }

    /// <summary>Page-locked host buffers handed out so far.</summary>
    public int PinnedBuffers { get { lock (gate) return pinned.Count; } }

    /// <summary>A page-locked host buffer of <paramref name="length"/> floats, freed with this object (the batch loader's buffer factory).</summary>
    public float[] AllocatePinned(int length)
    {
        var locked = device.Accelerator.AllocatePageLocked1D<float>(length, uninitialized: true);
        var array = locked.GetArray();
        lock (gate) pinned[array] = locked;
        return array;
    }

    /// <summary>
    /// Starts copying <paramref name="data"/>[0, <paramref name="length"/>) into <paramref name="slot"/> (0 or 1) on the
    /// copy stream. From a buffer of <see cref="AllocatePinned"/> it returns at once; from any other array the copy is
    /// done when it returns.
    /// </summary>
    public void Start(int slot, float[] data, int length)
    {
        if (length > capacity)
            throw new ArgumentException($"staged upload of {length} floats exceeds the {capacity} the staging buffers hold");
        lengths[slot] = length;
        if (length == 0) return;
        PageLockedArray1D<float>? locked;
        lock (gate) pinned.TryGetValue(data, out locked);
        var mark = Profiler?.Begin(device, stream) ?? default;
        var target = IlgpuDevice.DenseView(slots[slot]).SubView(0, length);
        if (locked != null && length == data.Length) target.CopyFromPageLockedAsync(stream, locked);
        else
        {
            ArrayView<float> view = target;
            view.CopyFromCPU(stream, ref data[0], length);
            locked = null;
        }
        Profiler?.EndCopy(mark, device, locked != null ? "upload (pinned, async)" : "upload (pageable)", 4.0 * length, LayerProfiler.CopyTrack);
    }

    /// <summary>Waits for <paramref name="slot"/>'s copy and returns its data on the device.</summary>
    public DeviceTensor Wait(int slot)
    {
        stream.Synchronize();
        return slots[slot].Prefix(lengths[slot]);
    }

    public void Dispose()
    {
        // A copy may still read a pinned buffer (a run stopped by an error or a cancellation).
        stream.Synchronize();
        lock (gate)
        {
            foreach (var p in pinned.Values) p.Dispose();
            pinned.Clear();
        }
        foreach (var s in slots) s.Dispose();
        stream.Dispose();
    }
}
