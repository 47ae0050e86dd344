using System.Diagnostics;

namespace Tp7.Engine.Model;

/// <summary>
/// Kernel-level profile of forward passes: each layer is one launch (convolution and linear layers carry their
/// ReLU fused), timed between device synchronisations, with its FLOPs and bytes turned into GFLOP/s and GB/s.
/// Synchronising after every layer costs a little throughput, so profiling is opt-in.
/// </summary>
public sealed class LayerProfiler
{
    public sealed record Entry(string Layer, string Op, string Shape, double Flops, double Bytes, double Seconds);

    readonly List<Entry> entries = [];
    public IReadOnlyList<Entry> Entries => entries;

    public void Record(string layer, string op, string shape, double flops, double bytes, double seconds)
        => entries.Add(new(layer, op, shape, flops, bytes, seconds));

    public void Clear() => entries.Clear();

    /// <summary>Per-layer totals in forward order: calls, seconds, GFLOP/s, GB/s.</summary>
    public IReadOnlyList<(string Layer, string Op, string Shape, int Calls, double Seconds, double GFlops, double GBytes)> Summary()
        => entries.GroupBy(e => (e.Layer, e.Op))
            .Select(g =>
            {
                double s = g.Sum(e => e.Seconds);
                return (g.Key.Layer, g.Key.Op, g.First().Shape, g.Count(), s,
                    s > 0 ? g.Sum(e => e.Flops) / s / 1e9 : 0, s > 0 ? g.Sum(e => e.Bytes) / s / 1e9 : 0);
            })
            .ToList();

    public static long Now() => Stopwatch.GetTimestamp();
    public static double Since(long t0) => Stopwatch.GetElapsedTime(t0).TotalSeconds;
}
