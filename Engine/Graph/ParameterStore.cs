using Tp7.Engine.Devices;

namespace Tp7.Engine.Graph;

/// <summary>
/// Every parameter of a model in one device allocation, in state_dict order, as llm.c's
/// malloc_and_point_parameters does; the trainable ones (a suffix of that order: the head, the classifier, or
/// everything from a layer on) get a mirror block of gradients, so ZeroGrad is one fill and an optimiser step is
/// one launch over a flat vector. Frozen parameters have no gradient and no optimiser state.
/// </summary>
public sealed class ParameterStore : IDisposable
{
    public sealed record Entry(string Name, Shape Shape, long Offset)
    {
        public long Elements => Shape.Elements;
    }

    readonly Dictionary<string, Entry> index = new(StringComparer.Ordinal);

    public ComputeDevice Device { get; }
    public IReadOnlyList<Entry> Entries { get; }
    /// <summary>All parameters, back to back in <see cref="Entries"/> order.</summary>
    public DeviceTensor Block { get; }
    public long Count { get; }
    /// <summary>Where the trainable suffix starts in <see cref="Block"/>; <see cref="Count"/> when nothing trains.</summary>
    public long TrainableOffset { get; private set; }
    public long TrainableCount => Count - TrainableOffset;
    /// <summary>Gradients of the trainable suffix (null until <see cref="SetTrainable"/>).</summary>
    public DeviceTensor? Grads { get; private set; }

    public ParameterStore(ComputeDevice device, IEnumerable<(string Name, Shape Shape)> specs)
    {
        Device = device;
        var entries = new List<Entry>();
        long offset = 0;
        foreach (var (name, shape) in specs)
        {
            var e = new Entry(name, shape, offset);
            if (!index.TryAdd(name, e)) throw new ArgumentException($"parameter '{name}' is listed twice");
            entries.Add(e);
            offset += shape.Elements;
        }
        Entries = entries;
        Count = offset;
        TrainableOffset = Count;
        Block = device.Allocate(Math.Max(1, Count));
    }

    public bool Contains(string name) => index.ContainsKey(name);

    public Entry Info(string name)
        => index.TryGetValue(name, out var e) ? e : throw new KeyNotFoundException($"no parameter '{name}'");

    public Tensor this[string name]
    {
        get
        {
            var e = Info(name);
            return new Tensor(Block.Slice(e.Offset, e.Elements), e.Shape);
        }
    }

    public bool IsTrainable(string name) => Info(name).Offset >= TrainableOffset;

    /// <summary>The gradient slice of a trainable parameter, or null for a frozen one.</summary>
    public Tensor? Grad(string name)
    {
        var e = Info(name);
        if (Grads == null || e.Offset < TrainableOffset) return null;
        return new Tensor(Grads.Slice(e.Offset - TrainableOffset, e.Elements), e.Shape);
    }

    /// <summary>
    /// Makes <paramref name="names"/> the trainable set and allocates their gradient block (zeroed). They must be
    /// a suffix of the parameter order, so the block and every optimiser state stay contiguous.
    /// </summary>
    public void SetTrainable(IReadOnlyCollection<string> names)
    {
        foreach (var n in names) Info(n);
        int first = Entries.Count;
        for (int i = Entries.Count - 1; i >= 0 && names.Contains(Entries[i].Name); i--) first = i;
        if (first + names.Count != Entries.Count)
            throw new ArgumentException($"trainable parameters must be the last ones in order; got {string.Join(", ", names)}");
        Grads?.Dispose();
        Grads = null;
        TrainableOffset = first < Entries.Count ? Entries[first].Offset : Count;
        if (TrainableCount > 0)
        {
            Grads = Device.Allocate(TrainableCount);
            Device.Clear(Grads);
        }
    }

    /// <summary>Gradients to zero: one fill over the whole block.</summary>
    public void ZeroGrad()
    {
        if (Grads != null) Device.Clear(Grads);
    }

    /// <summary>
    /// Changes whenever a parameter may have: Write, Fill, an optimiser step. What is derived from the weights and kept
    /// between passes (F(4x4)'s transformed filters) is valid while it stays the same.
    /// </summary>
    public long Version => Interlocked.Read(ref version);
    long version;

    /// <summary>Says the parameters changed outside Write and Fill (an optimiser's launch over the block).</summary>
    public void MarkChanged() => Interlocked.Increment(ref version);

    public void Write(string name, ReadOnlySpan<float> values)
    {
        MarkChanged();
        var e = Info(name);
        if (values.Length != e.Elements)
            throw new ArgumentException($"parameter '{name}' has {e.Elements} values ({e.Shape}), got {values.Length}");
        Device.Upload(Block.Slice(e.Offset, e.Elements), values);
    }

    public float[] Read(string name) => Device.Download(this[name].Data);

    /// <summary>
    /// Fills a parameter in place: on the host backend <paramref name="fill"/> writes straight into the block (no
    /// second copy of the weights in memory); elsewhere through one staging array.
    /// </summary>
    public void Fill(string name, SpanAction fill)
    {
        MarkChanged();
        var e = Info(name);
        if (Device is HostDevice)
            fill(HostDevice.Span(Block.Slice(e.Offset, e.Elements)));
        else
        {
            var staging = new float[e.Elements];
            fill(staging);
            Device.Upload(Block.Slice(e.Offset, e.Elements), staging);
        }
    }

    public delegate void SpanAction(Span<float> destination);

    public void Dispose()
    {
        Grads?.Dispose();
        Block.Dispose();
    }
}
