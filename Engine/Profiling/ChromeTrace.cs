using System.Text.Json;
using Tp7.Engine.Model;

namespace Tp7.Engine.Profiling;

/// <summary>
/// Writes a profile as a Chrome trace (the Trace Event Format that Perfetto and chrome://tracing open): one "X"
/// (complete) event per span with ts and dur in microseconds from the first recorded event. Process 1 is the host, one
/// track per thread (the executor's, each decode worker's); process 2 is the device, one track per stream (kernels
/// and copies on the compute stream, staged uploads on the copy stream). Names of processes and threads are "M"
/// (metadata) events. Spec: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
/// </summary>
public static class ChromeTrace
{
    public const int HostPid = 1, DevicePid = 2;

    public static void Write(string path, LayerProfiler profiler, string deviceName, IReadOnlyDictionary<string, object>? metadata = null)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        using var stream = File.Create(path);
        Write(stream, profiler, deviceName, metadata);
    }

    public static void Write(Stream stream, LayerProfiler profiler, string deviceName, IReadOnlyDictionary<string, object>? metadata = null)
    {
        var entries = profiler.Entries;
        var copies = profiler.Copies;
        var spans = profiler.Spans;
        var tracks = new[] { LayerProfiler.ComputeTrack, LayerProfiler.CopyTrack };
        int Tid(string track) => Array.IndexOf(tracks, track) + 1;
        // Time 0 is the first recorded event (not the profiler's creation, which precedes the warm-up).
        double zero = spans.Select(s => s.Start).Concat(entries.Select(e => e.Start)).Concat(copies.Select(c => c.Start)).DefaultIfEmpty(0).Min();
        double Us(double seconds) => Math.Round(seconds * 1e6, 3);
        double At(double start) => Us(start - zero);

        var events = new List<(double Ts, Action<Utf8JsonWriter> Write)>();
        foreach (var s in spans)
            events.Add((At(s.Start), w => Event(w, s.Name, s.Category, HostPid, s.Thread, At(s.Start), Us(s.Seconds), s.Args)));
        foreach (var e in entries)
            events.Add((At(e.Start), w => Event(w, e.Layer, e.Op, DevicePid, Tid(LayerProfiler.ComputeTrack), At(e.Start), Us(e.Seconds),
                new Dictionary<string, object>
                {
                    ["op"] = e.Op, ["shape"] = e.Shape, ["flops"] = e.Flops, ["bytes"] = e.Bytes,
                    ["gflop_per_s"] = e.Seconds > 0 ? Math.Round(e.Flops / e.Seconds / 1e9, 3) : 0,
                    ["gb_per_s"] = e.Seconds > 0 ? Math.Round(e.Bytes / e.Seconds / 1e9, 3) : 0,
                })));
        foreach (var c in copies)
            events.Add((At(c.Start), w => Event(w, c.Name, "copy", DevicePid, Tid(c.Track), At(c.Start), Us(c.Seconds),
                new Dictionary<string, object> { ["bytes"] = c.Bytes, ["gb_per_s"] = c.Seconds > 0 ? Math.Round(c.Bytes / c.Seconds / 1e9, 3) : 0 })));

        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
        w.WriteStartObject();
        w.WriteStartArray("traceEvents");
        Name(w, "process_name", HostPid, 0, "tp7 host");
        Name(w, "process_name", DevicePid, 0, $"device: {deviceName}");
        foreach (var (id, name) in spans.Select(s => (s.Thread, s.ThreadName)).Distinct().OrderBy(t => t.Thread))
            Name(w, "thread_name", HostPid, id, name);
        foreach (var t in tracks) Name(w, "thread_name", DevicePid, Tid(t), t);
        foreach (var (_, write) in events.OrderBy(e => e.Ts)) write(w);
        w.WriteEndArray();
        w.WriteString("displayTimeUnit", "ms");
        w.WriteStartObject("otherData");
        w.WriteString("device", deviceName);
        w.WriteString("kernel_timing", profiler.Timing);
        foreach (var (k, v) in metadata ?? new Dictionary<string, object>())
        {
            w.WritePropertyName(k);
            JsonSerializer.Serialize(w, v);
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }

    static void Event(Utf8JsonWriter w, string name, string category, int pid, int tid, double ts, double dur, IReadOnlyDictionary<string, object>? args)
    {
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("cat", category);
        w.WriteString("ph", "X");
        w.WriteNumber("pid", pid);
        w.WriteNumber("tid", tid);
        w.WriteNumber("ts", ts);
        w.WriteNumber("dur", dur);
        if (args != null)
        {
            w.WritePropertyName("args");
            JsonSerializer.Serialize(w, args);
        }
        w.WriteEndObject();
    }

    static void Name(Utf8JsonWriter w, string kind, int pid, int tid, string name)
    {
        w.WriteStartObject();
        w.WriteString("name", kind);
        w.WriteString("ph", "M");
        w.WriteNumber("pid", pid);
        w.WriteNumber("tid", tid);
        w.WriteStartObject("args");
        w.WriteString("name", name);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
