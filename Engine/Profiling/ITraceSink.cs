using System.Diagnostics;

namespace Tp7.Engine.Profiling;

/// <summary>
/// Receives host spans from the real pipeline (image decode and preprocessing on the loader's workers, uploads and
/// downloads, the executor's launches) for a trace. The pipeline calls it only when one is attached, so an untraced
/// run pays one null check per span.
/// </summary>
public interface ITraceSink
{
    /// <summary>A span of the calling thread between two <see cref="Stopwatch.GetTimestamp"/> readings.</summary>
    void HostSpan(string name, string category, long start, long end, IReadOnlyDictionary<string, object>? args = null);
}

public static class TraceSinkExtensions
{
    /// <summary>A span from <paramref name="start"/> to now, when a sink is attached.</summary>
    public static void SpanSince(this ITraceSink? sink, string name, string category, long start, IReadOnlyDictionary<string, object>? args = null)
        => sink?.HostSpan(name, category, start, Stopwatch.GetTimestamp(), args);
}
