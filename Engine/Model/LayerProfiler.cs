using System.Diagnostics;
using ILGPU.Runtime;
using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Profiling;

namespace Tp7.Engine.Model;

/// <summary>
/// Kernel-level profile of passes through the executor: every launch (one per non-view node; convolution and linear
/// layers carry their ReLU fused) with its FLOPs and bytes from the op's cost, copies to and from the device, and host
/// spans from the pipeline (decode, preprocess, enqueue) for a Chrome trace. Times come from where they are true:
/// <list type="bullet">
/// <item>an ILGPU accelerator opened with profiling: device events (ILGPU profiling markers) recorded on the stream
/// around each launch, so launches are not synchronised and the device timeline is the real one;</item>
/// <item>the host backend: a stopwatch around each op (its ops run synchronously on the calling thread);</item>
/// <item>an ILGPU accelerator opened without profiling: a stopwatch between device synchronisations per launch.</item>
/// </list>
/// Every time is in seconds from <see cref="Origin"/> on the host's clock; device events are placed on it through one
/// marker recorded right after a synchronisation. Profiling is opt-in: markers and spans cost a little per launch.
/// </summary>
public sealed class LayerProfiler : ITraceSink, IDisposable
{
    /// <param name="Start">Seconds from <see cref="Origin"/> at which the launch began on its device.</param>
    public sealed record Entry(string Layer, string Op, string Shape, double Flops, double Bytes, double Seconds, double Start = 0);

    /// <summary>A copy between host and device (upload, download, or the device copy of a staged input) on a device track.</summary>
    public sealed record CopyEntry(string Name, string Track, double Bytes, double Start, double Seconds);

    /// <summary>A host span of thread <paramref name="Thread"/>.</summary>
    public sealed record Span(string Name, string Category, int Thread, string ThreadName, double Start, double Seconds, IReadOnlyDictionary<string, object>? Args);

    /// <summary>Where a launch began: the host time, and on a profiled accelerator the start marker on its stream.</summary>
    public readonly record struct Mark(long Host, ProfilingMarker? Device, AcceleratorStream? Stream);

    public const string ComputeTrack = "compute stream", CopyTrack = "copy stream";

    sealed record Pending(ProfilingMarker Start, ProfilingMarker End, string Track, Entry? Kernel, string? CopyName, double CopyBytes);

    readonly object gate = new();
    readonly List<Entry> entries = [];
    readonly List<CopyEntry> copies = [];
    readonly List<Span> spans = [];
    readonly List<Pending> pending = [];
    readonly int mainThread = Environment.CurrentManagedThreadId;
    ProfilingMarker? originMarker;
    Accelerator? originAccelerator;
    double originMarkerSeconds;

    /// <summary><see cref="Stopwatch.GetTimestamp"/> when the profiler was made: time 0 of every entry and span.</summary>
    public long Origin { get; } = Stopwatch.GetTimestamp();

    /// <summary>How kernel times were taken (set by the first launch): device events or a host stopwatch, and why.</summary>
    public string Timing { get; private set; } = "no launch recorded";

    /// <summary>Kernel launches in the order they ran (waits for outstanding device events).</summary>
    public IReadOnlyList<Entry> Entries { get { Flush(); lock (gate) return [.. entries]; } }

    public IReadOnlyList<CopyEntry> Copies { get { Flush(); lock (gate) return [.. copies]; } }

    public IReadOnlyList<Span> Spans { get { lock (gate) return [.. spans]; } }

    public double Seconds(long timestamp) => (timestamp - Origin) / (double)Stopwatch.Frequency;

    /// <summary>Records a launch measured elsewhere (kept for callers that time their own work).</summary>
    public void Record(string layer, string op, string shape, double flops, double bytes, double seconds)
    {
        lock (gate) entries.Add(new(layer, op, shape, flops, bytes, seconds));
    }

    public void Clear()
    {
        Flush();
        lock (gate)
        {
            entries.Clear();
            copies.Clear();
            spans.Clear();
        }
    }

    /// <summary>Call before a launch on <paramref name="device"/> (on <paramref name="stream"/>, else its default stream).</summary>
    public Mark Begin(ComputeDevice device, AcceleratorStream? stream = null)
    {
        if (device is IlgpuDevice g)
        {
            if (g.Profiling)
            {
                EnsureOrigin(g);
                var s = stream ?? g.Accelerator.DefaultStream;
                return new(Stopwatch.GetTimestamp(), s.AddProfilingMarker(), s);
            }
            // Without device events, time only this launch: wait for whatever was enqueued before it.
            if (stream != null) stream.Synchronize(); else g.Synchronize();
        }
        return new(Stopwatch.GetTimestamp(), null, stream);
    }

    /// <summary>Call after a launch begun with <see cref="Begin"/>: records it with its cost under the layer's name.</summary>
    public void End(Mark mark, ComputeDevice device, string layer, string op, string shape, OpCost cost)
    {
        var entry = new Entry(layer, op, shape, cost.Flops, cost.Bytes, 0, Seconds(mark.Host));
        if (mark.Device != null)
        {
            var end = mark.Stream!.AddProfilingMarker();
            long now = Stopwatch.GetTimestamp();
            lock (gate)
            {
                Timing = "device events (ILGPU profiling markers around each launch on the accelerator's stream)";
                pending.Add(new(mark.Device, end, ComputeTrack, entry, null, 0));
            }
            HostSpan(op, "enqueue", mark.Host, now, new Dictionary<string, object> { ["layer"] = layer, ["shape"] = shape });
            return;
        }
        Sync(device, mark.Stream);
        long t1 = Stopwatch.GetTimestamp();
        lock (gate)
        {
            Timing = device is HostDevice
                ? "host stopwatch around each op (the host backend runs every op synchronously on the calling thread)"
                : "host stopwatch between device synchronisations (the device was opened without profiling)";
            entries.Add(entry with { Seconds = (t1 - mark.Host) / (double)Stopwatch.Frequency });
        }
    }

    /// <summary>Call after a copy begun with <see cref="Begin"/>; it goes on the device track of its stream and as a host span.</summary>
    public void EndCopy(Mark mark, ComputeDevice device, string name, double bytes, string track = ComputeTrack)
    {
        long now;
        if (mark.Device != null)
        {
            var end = mark.Stream!.AddProfilingMarker();
            now = Stopwatch.GetTimestamp();
            lock (gate) pending.Add(new(mark.Device, end, track, null, name, bytes));
        }
        else
        {
            Sync(device, mark.Stream);
            now = Stopwatch.GetTimestamp();
            lock (gate) copies.Add(new(name, track, bytes, Seconds(mark.Host), (now - mark.Host) / (double)Stopwatch.Frequency));
        }
        HostSpan(name, "copy", mark.Host, now, new Dictionary<string, object> { ["bytes"] = bytes });
    }

    static void Sync(ComputeDevice device, AcceleratorStream? stream)
    {
        if (stream != null) stream.Synchronize();
        else device.Synchronize();
    }

    /// <inheritdoc/>
    public void HostSpan(string name, string category, long start, long end, IReadOnlyDictionary<string, object>? args = null)
    {
        int id = Environment.CurrentManagedThreadId;
        var t = Thread.CurrentThread;
        string thread = id == mainThread ? "main (executor)" : t.Name ?? (t.IsThreadPoolThread ? $"pool thread {id}" : $"thread {id}");
        lock (gate) spans.Add(new(name, category, id, thread, Seconds(start), (end - start) / (double)Stopwatch.Frequency, args));
    }

    /// <summary>Resolves outstanding device events into entries (blocks until the device has passed them).</summary>
    public void Flush()
    {
        lock (gate)
        {
            foreach (var p in pending)
            {
                double start = originMarkerSeconds + p.Start.MeasureFrom(originMarker!).TotalSeconds;
                double seconds = p.End.MeasureFrom(p.Start).TotalSeconds;
                if (p.Kernel != null) entries.Add(p.Kernel with { Start = start, Seconds = seconds });
                else copies.Add(new(p.CopyName!, p.Track, p.CopyBytes, start, seconds));
                p.Start.Dispose();
                p.End.Dispose();
            }
            pending.Clear();
        }
    }

    /// <summary>Device events measure from one marker recorded right after a synchronisation, when the device is idle:
    /// its host time is the device timeline's zero on the host's clock.</summary>
    void EnsureOrigin(IlgpuDevice device)
    {
        lock (gate)
        {
            if (originAccelerator == device.Accelerator) return;
            if (originAccelerator != null)
                throw new InvalidOperationException($"this profiler already records {originAccelerator.Name}; use one profiler per device");
            device.Synchronize();
            originMarker = device.Accelerator.DefaultStream.AddProfilingMarker();
            originMarker.Synchronize();
            originMarkerSeconds = Seconds(Stopwatch.GetTimestamp());
            originAccelerator = device.Accelerator;
        }
    }

    /// <summary>Per-layer totals in forward order: calls, seconds, GFLOP/s, GB/s.</summary>
    public IReadOnlyList<(string Layer, string Op, string Shape, int Calls, double Seconds, double GFlops, double GBytes)> Summary()
        => Entries.GroupBy(e => (e.Layer, e.Op))
            .Select(g =>
            {
                double s = g.Sum(e => e.Seconds);
                return (g.Key.Layer, g.Key.Op, g.First().Shape, g.Count(), s,
                    s > 0 ? g.Sum(e => e.Flops) / s / 1e9 : 0, s > 0 ? g.Sum(e => e.Bytes) / s / 1e9 : 0);
            })
            .ToList();

    /// <summary>Totals per op kind (conv+relu, maxpool, linear …), most time first: calls, seconds, FLOPs, bytes.</summary>
    public IReadOnlyList<(string Op, int Calls, double Seconds, double Flops, double Bytes)> ByKind()
        => Entries.GroupBy(e => e.Op)
            .Select(g => (g.Key, g.Count(), g.Sum(e => e.Seconds), g.Sum(e => e.Flops), g.Sum(e => e.Bytes)))
            .OrderByDescending(r => r.Item3)
            .ToList();

    public static long Now() => Stopwatch.GetTimestamp();
    public static double Since(long t0) => Stopwatch.GetElapsedTime(t0).TotalSeconds;

    public void Dispose()
    {
        lock (gate)
        {
            foreach (var p in pending)
            {
                p.Start.Dispose();
                p.End.Dispose();
            }
            pending.Clear();
            originMarker?.Dispose();
            originMarker = null;
        }
    }
}
