using System.Text.Json;
using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Features;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Engine.Profiling;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// `tp7 profile` as a user runs it, on the host backend and on ILGPU's CPU accelerator: the per-kernel FLOPs add up to
/// the network's multiply-adds as `tp7 info` counts them, each layer is launched once per pass, and the Chrome trace
/// is well formed (every complete event has ts and dur, device tracks are sequential, kernels carry their work).
/// </summary>
public sealed class ProfileCliTests(ITestOutputHelper log)
{
    const int Size = 32;

    [Fact]
    public void HostBackendProfileAddsUpToTheNetworkAndWritesAWellFormedTrace()
        => CheckForwardProfile("cpu", batch: 2, reps: 2, warmup: 1, timing: "host stopwatch");

    [Fact]
    public void IlgpuCpuProfileIsTimedByDeviceEventsAndAddsUpToTheNetwork()
        => CheckForwardProfile("ilgpu-cpu", batch: 1, reps: 1, warmup: 0, timing: "device events");

    void CheckForwardProfile(string device, int batch, int reps, int warmup, string timing)
    {
        using var tmp = new ScratchDir("tp7-profile");
        string trace = tmp["trace.json"];
        var r = CliRunner.RunOk(tmp.Path, ["profile", "--device", device, "--size", $"{Size}", "--batch", $"{batch}", "--reps", $"{reps}",
            "--warmup", $"{warmup}", "--trace", trace, "--json"], timeout: TimeSpan.FromMinutes(10));
        log.WriteLine(r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.Contains(timing, root.GetProperty("kernel_timing").GetString());

        // What `tp7 info` says of the network at this size: layer kinds and multiply-adds per image.
        var info = CliRunner.RunOk(tmp.Path, ["info", "--size", $"{Size}", "--json"]);
        using var infoDoc = JsonDocument.Parse(info.Stdout);
        var kinds = infoDoc.RootElement.GetProperty("layers").EnumerateArray()
            .GroupBy(l => l.GetProperty("kind").GetString()!).ToDictionary(g => g.Key, g => g.Count());
        double macs = infoDoc.RootElement.GetProperty("total_macs").GetDouble();

        // Convolution and linear layers carry their ReLU fused; flatten and dropout are views (no launch).
        var calls = root.GetProperty("kinds").EnumerateArray().ToDictionary(k => k.GetProperty("op").GetString()!, k => k.GetProperty("calls").GetInt32());
        log.WriteLine(string.Join(", ", calls.Select(kv => $"{kv.Key}: {kv.Value}")));
        Assert.Equal(kinds["Conv"] * reps, calls["conv+relu"]);
        Assert.Equal(kinds["Linear"] * reps, calls["linear+relu"] + calls["linear"]);
        Assert.Equal(kinds["MaxPool"] * reps, calls["maxpool"]);
        Assert.Equal(kinds["AdaptiveAvgPool"] * reps, calls["adaptiveavgpool"]);
        Assert.False(calls.ContainsKey("relu"), "every ReLU of VGG16 is fused into its convolution or linear layer");
        int launches = kinds["Conv"] + kinds["Linear"] + kinds["MaxPool"] + kinds["AdaptiveAvgPool"];
        Assert.Equal(launches, root.GetProperty("forward_launches_per_pass").GetInt32());
        Assert.Equal(launches * reps, root.GetProperty("total").GetProperty("calls").GetInt32());
        foreach (var layer in root.GetProperty("layers").EnumerateArray())
            Assert.Equal(reps, layer.GetProperty("calls").GetInt32());

        double weighted = root.GetProperty("kinds").EnumerateArray()
            .Where(k => k.GetProperty("op").GetString()!.StartsWith("conv", StringComparison.Ordinal) || k.GetProperty("op").GetString()!.StartsWith("linear", StringComparison.Ordinal))
            .Sum(k => k.GetProperty("flops").GetDouble());
        double expected = 2 * macs * batch * reps;
        Assert.True(Math.Abs(weighted - expected) <= 1e-9 * expected, $"conv + linear FLOPs {weighted:R}, expected 2 x {macs:R} MAC x {batch} x {reps} = {expected:R}");

        var kernels = TraceChecks.Check(trace);
        Assert.Equal(launches * reps, kernels.Count);
        Assert.Equal(root.GetProperty("total").GetProperty("flops").GetDouble(), kernels.Sum(k => k.Flops), 6);
        Assert.All(kernels, k => Assert.True(k.Seconds > 0, $"{k.Name}: a kernel of zero duration"));
        Assert.Contains("trace", r.Stdout);
    }

    [Fact]
    public void WithDataTheTraceHoldsEveryImagesDecodeAndPreprocessOnTheLoadersThreads()
    {
        using var tmp = new ScratchDir("tp7-profile-data");
        DemoData.CopyClassFolders(tmp["data"], 2, 3);
        string trace = tmp["trace.json"];
        const int batch = 2, reps = 2;
        var r = CliRunner.RunOk(tmp.Path, ["profile", "--device", "cpu", "--size", $"{Size}", "--batch", $"{batch}", "--reps", $"{reps}",
            "--data", tmp["data"], "--trace", trace]);
        log.WriteLine(r.Stdout);
        Assert.Contains("extraction pipeline", r.Stdout);
        TraceChecks.Check(trace);
        using var doc = JsonDocument.Parse(File.ReadAllText(trace));
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().Where(e => e.GetProperty("ph").GetString() == "X").ToList();
        int main = events.First(e => e.GetProperty("name").GetString()!.StartsWith("batch ", StringComparison.Ordinal)).GetProperty("tid").GetInt32();
        foreach (var name in new[] { "decode", "preprocess" })
        {
            var spans = events.Where(e => e.GetProperty("name").GetString() == name).ToList();
            // Warm-up batches are not profiled: one span per image of the profiled passes.
            Assert.Equal(batch * reps, spans.Count);
            Assert.All(spans, s => Assert.NotEqual(main, s.GetProperty("tid").GetInt32()));
        }
        Assert.Equal(reps, events.Count(e => e.GetProperty("name").GetString()!.StartsWith("batch ", StringComparison.Ordinal)));
    }

    [Fact]
    public void BackwardProfileCountsEveryTrainingLaunch()
    {
        using var tmp = new ScratchDir("tp7-profile-backward");
        string trace = tmp["trace.json"];
        const int reps = 1;
        var r = CliRunner.RunOk(tmp.Path, ["profile", "--device", "cpu", "--size", $"{Size}", "--batch", "2", "--reps", $"{reps}", "--warmup", "0",
            "--backward", "--trace", trace, "--json"]);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        int forward = root.GetProperty("forward_launches_per_pass").GetInt32(), backward = root.GetProperty("backward_launches_per_pass").GetInt32();
        var calls = root.GetProperty("kinds").EnumerateArray().ToDictionary(k => k.GetProperty("op").GetString()!, k => k.GetProperty("calls").GetInt32());
        log.WriteLine(string.Join(", ", calls.Select(kv => $"{kv.Key}: {kv.Value}")));
        Assert.Equal((forward + backward) * reps, root.GetProperty("total").GetProperty("calls").GetInt32());
        Assert.Equal(13 * reps, calls["conv+relu backward"]);
        Assert.Equal(13 * reps, calls["conv+relu"]);
        Assert.Equal(2 * reps, calls["dropout"]); // train mode: dropout draws masks, so it is a launch
        Assert.Equal((forward + backward) * reps, TraceChecks.Check(trace).Count);
    }
}

/// <summary>The peak table matches the names CUDA reports; the host's peak is computed and says from what.</summary>
public sealed class DevicePeakTests
{
    [Theory]
    [InlineData("NVIDIA H100 80GB HBM3", "H100 SXM", 3.35e12)]
    [InlineData("NVIDIA H100 PCIe", "H100 PCIe", 2.0e12)]
    [InlineData("NVIDIA H100 NVL", "H100 NVL", 3.9e12)]
    [InlineData("NVIDIA H200", "H200 SXM", 4.8e12)]
    [InlineData("NVIDIA H200 NVL", "H200 NVL", 4.8e12)]
    [InlineData("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", 2.039e12)]
    [InlineData("NVIDIA A100 80GB PCIe", "A100 80GB PCIe", 1.935e12)]
    [InlineData("NVIDIA A100-PCIE-40GB", "A100 40GB", 1.555e12)]
    [InlineData("NVIDIA A100-SXM4-40GB", "A100 40GB", 1.555e12)]
    public void GpuNamesFindTheirDatasheetRow(string cudaName, string row, double bandwidth)
    {
        var p = DevicePeaks.ForGpu(cudaName);
        Assert.NotNull(p);
        Assert.Equal(row, p.Name);
        Assert.Equal(bandwidth, p.BytesPerSecond);
        // Tensor cores: TF32 is half the fp16/bf16 rate on all of these (to the datasheets' rounding), and far above SIMT fp32.
        Assert.True(Math.Abs(p.Tf32!.Value / (p.Fp16!.Value / 2) - 1) < 5e-3, $"{row}: TF32 {p.Tf32:E4} is not half of fp16's {p.Fp16:E4}");
        Assert.True(p.Tf32 > 5 * p.Fp32);
    }

    [Fact]
    public void UnknownGpusHaveNoPeak() => Assert.Null(DevicePeaks.ForGpu("NVIDIA GeForce RTX 4090"));

    [Fact]
    public void HostPeakIsCoresTimesSimdTimesClock()
    {
        var p = DevicePeaks.Host();
        Assert.True(p.Fp32 >= Environment.ProcessorCount * 2 * 4 * 2 * 0.5e9 / 2, $"host peak {p.Fp32:E3} below any SIMD core's");
        Assert.Null(p.BytesPerSecond);
        Assert.Null(p.Flops("tf32"));
        Assert.Matches("MHz from (/proc/cpuinfo|/sys/devices)", p.Source);
    }
}

/// <summary>
/// Extraction through staged uploads (page-locked buffers, a copy stream, batch i+1 uploaded before batch i runs) gives
/// the same bits as uploads from pageable memory at each pass, on ILGPU's CPU accelerator; the host backend never stages.
/// </summary>
public sealed class OverlapExtractionTests(ITestOutputHelper log)
{
    [Fact]
    public void StagedUploadsGiveTheSameFeaturesAndIssueTheNextUploadBeforeThisBatchComputes()
    {
        using var tmp = new ScratchDir("tp7-overlap");
        var classes = DemoData.CopyClassFolders(tmp["data"], 2, 3);
        // An undecodable image: its batch shrinks, is copied out of the pinned buffer and uploads from pageable memory.
        File.WriteAllText(Path.Combine(tmp["data"], classes[0], "broken.png"), "not a png");
        var items = classes.SelectMany((c, k) => Directory.GetFiles(Path.Combine(tmp["data"], c)).Order(StringComparer.Ordinal)
            .Select(f => new DatasetItem(f, k))).ToList();
        var weights = Vgg16Weights.RandomInit(0);
        var pre = Preprocessing.ImageNet with { Size = 32 };
        const int batch = 2;

        (FeatureSet Set, LayerProfiler Profiler) Run(ComputeDevice device, bool overlap)
        {
            using var model = new ImageModel(device, weights, pre);
            var profiler = new LayerProfiler();
            model.Profiler = profiler;
            var set = new FeatureExtractor(model, "overlap-test", "pool5", batchSize: batch) { Overlap = overlap }.Extract(items, classes);
            return (set, profiler);
        }

        using var gpu = IlgpuDevice.OpenCpuAccelerator(profiling: true);
        var (staged, stagedProfile) = Run(gpu, overlap: true);
        var (plain, plainProfile) = Run(gpu, overlap: false);
        using var host = new HostDevice();
        var (onHost, hostProfile) = Run(host, overlap: true);
        Assert.Equal(6, staged.N);
        Assert.Equal(plain.Paths, staged.Paths);
        for (int i = 0; i < plain.X.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(plain.X[i]) == BitConverter.SingleToInt32Bits(staged.X[i]),
                $"pool5 [{i / staged.D}, {i % staged.D}] of ({staged.N}, {staged.D}): staged {staged.X[i]:R}, pageable {plain.X[i]:R}");
        for (int i = 0; i < onHost.X.Length; i++)
            Assert.True(Math.Abs(onHost.X[i] - staged.X[i]) <= 1e-4 + 1e-4 * Math.Abs(onHost.X[i]),
                $"pool5 [{i / staged.D}, {i % staged.D}] of ({staged.N}, {staged.D}): ILGPU {staged.X[i]:R}, host {onHost.X[i]:R}");

        string Uploads(LayerProfiler p) => string.Join(", ", p.Copies.Where(c => c.Name.StartsWith("upload", StringComparison.Ordinal)).Select(c => $"{c.Name} [{c.Track}]"));
        log.WriteLine($"staged: {Uploads(stagedProfile)}\npageable: {Uploads(plainProfile)}\nhost: {Uploads(hostProfile)}");
        // 7 items in batches of 2 (broken.png sorts first): batch 0 loses its broken file and is copied out of its pinned
        // buffer, batches 1 and 2 upload from the pinned buffers they were decoded into, and the short last batch has an
        // ordinary array of its own.
        var stagedUploads = stagedProfile.Copies.Where(c => c.Track == LayerProfiler.CopyTrack).ToList();
        Assert.Equal(["upload (pageable)", "upload (pinned, async)", "upload (pinned, async)", "upload (pageable)"],
            stagedUploads.Select(c => c.Name).ToList());
        Assert.DoesNotContain(plainProfile.Copies, c => c.Track == LayerProfiler.CopyTrack);
        Assert.DoesNotContain(hostProfile.Copies, c => c.Track == LayerProfiler.CopyTrack);

        // Batch i+1's upload is on the copy stream before batch i's forward pass ends (on a GPU the two run together;
        // ILGPU's CPU accelerator runs each at enqueue time, so here it precedes the pass).
        var passes = stagedProfile.Spans.Where(s => s.Name.StartsWith("batch ", StringComparison.Ordinal)).OrderBy(s => s.Start).ToList();
        Assert.Equal(4, passes.Count);
        for (int i = 0; i + 1 < passes.Count; i++)
            Assert.True(stagedUploads[i + 1].Start < passes[i].Start + passes[i].Seconds,
                $"upload of batch {i + 1} starts at {stagedUploads[i + 1].Start:F6} s, after batch {i}'s pass ended at {passes[i].Start + passes[i].Seconds:F6} s");
        stagedProfile.Dispose();
        plainProfile.Dispose();
        hostProfile.Dispose();
    }
}

/// <summary>Checks shared by the trace tests: the Trace Event Format's rules that Perfetto relies on.</summary>
static class TraceChecks
{
    public sealed record Kernel(string Name, double Flops, double Seconds);

    /// <summary>Asserts the structure of a trace file and returns its kernel events (device process, compute stream, with flops).</summary>
    public static List<Kernel> Check(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
        var meta = events.Where(e => e.GetProperty("ph").GetString() == "M").ToList();
        Assert.Contains(meta, e => e.GetProperty("name").GetString() == "process_name" && e.GetProperty("pid").GetInt32() == ChromeTrace.DevicePid);
        Assert.Contains(meta, e => e.GetProperty("name").GetString() == "process_name" && e.GetProperty("pid").GetInt32() == ChromeTrace.HostPid);
        var complete = events.Where(e => e.GetProperty("ph").GetString() == "X").ToList();
        Assert.NotEmpty(complete);
        foreach (var e in complete)
        {
            foreach (var key in new[] { "name", "cat", "pid", "tid", "ts", "dur" })
                Assert.True(e.TryGetProperty(key, out _), $"{path}: event without {key}: {e}");
            Assert.True(e.GetProperty("ts").GetDouble() >= 0 && e.GetProperty("dur").GetDouble() >= 0, $"{path}: negative ts or dur: {e}");
        }
        // Device tracks are in-order streams: each event starts at or after the previous one ended.
        foreach (var track in complete.Where(e => e.GetProperty("pid").GetInt32() == ChromeTrace.DevicePid).GroupBy(e => e.GetProperty("tid").GetInt32()))
        {
            double end = double.NegativeInfinity;
            foreach (var e in track.OrderBy(e => e.GetProperty("ts").GetDouble()))
            {
                double ts = e.GetProperty("ts").GetDouble();
                Assert.True(ts >= end - 1e-3, $"{path}: device track {track.Key}: {e.GetProperty("name")} starts at {ts} us, before the previous event ended at {end} us");
                end = ts + e.GetProperty("dur").GetDouble();
            }
        }
        return complete.Where(e => e.GetProperty("pid").GetInt32() == ChromeTrace.DevicePid && e.GetProperty("args").TryGetProperty("flops", out _))
            .Select(e =>
            {
                var args = e.GetProperty("args");
                Assert.True(args.TryGetProperty("shape", out _) && args.TryGetProperty("bytes", out _), $"{path}: kernel without shape or bytes: {e}");
                return new Kernel(e.GetProperty("name").GetString()!, args.GetProperty("flops").GetDouble(), e.GetProperty("dur").GetDouble() / 1e6);
            })
            .ToList();
    }
}

/// <summary>
/// Where the profiler's kernel times come from on each kind of device: device events on an ILGPU context built with
/// profiling, a synchronised stopwatch on one built without, a stopwatch on the host backend; every launch and copy
/// recorded once, with its cost, in order on the device timeline.
/// </summary>
public sealed class ProfilerTimingTests
{
    static Tp7.Engine.Graph.Graph TwoOps()
    {
        var g = new Tp7.Engine.Graph.Graph();
        g.Inputs["x"] = new Tp7.Engine.Graph.Shape(1, 37);
        g.Nodes.Add(new Tp7.Engine.Graph.Node("r", "Relu", ["x"], ["y"], new Tp7.Engine.Graph.Attributes()));
        g.Nodes.Add(new Tp7.Engine.Graph.Node("s", "Softmax", ["y"], ["p"], new Tp7.Engine.Graph.Attributes()));
        g.Output = "p";
        return g;
    }

    [Theory]
    [InlineData("cpu", "host stopwatch around each op")]
    [InlineData("ilgpu-cpu profiled", "device events")]
    [InlineData("ilgpu-cpu", "host stopwatch between device synchronisations")]
    public void EachLaunchAndCopyIsRecordedOnceWithItsClock(string device, string timing)
    {
        using ComputeDevice dev = device == "cpu" ? new HostDevice() : IlgpuDevice.OpenCpuAccelerator(profiling: device.EndsWith("profiled", StringComparison.Ordinal));
        using var net = new Tp7.Engine.Graph.Network(dev, TwoOps());
        using var profiler = new LayerProfiler();
        net.Profiler = profiler;
        var x = Enumerable.Range(0, 5 * 37).Select(i => (float)Math.Sin(i)).ToArray();
        const int passes = 3;
        for (int i = 0; i < passes; i++) net.Forward(x, new Tp7.Engine.Graph.Shape(5, 37), ["p"]);

        Assert.Contains(timing, profiler.Timing);
        var entries = profiler.Entries;
        Assert.Equal(Enumerable.Repeat(new[] { "relu", "softmax" }, passes).SelectMany(a => a), entries.Select(e => e.Op));
        Assert.All(entries, e => Assert.Equal("[5, 37]", e.Shape));
        Assert.All(entries.Where(e => e.Op == "relu"), e => Assert.Equal(8.0 * 5 * 37, e.Bytes));
        Assert.All(entries, e => Assert.True(e.Seconds > 0, $"{e.Layer}: zero time"));
        var copies = profiler.Copies;
        Assert.Equal(Enumerable.Repeat(new[] { "upload", "download" }, passes).SelectMany(a => a), copies.Select(c => c.Name));
        Assert.All(copies, c => Assert.Equal(4.0 * 5 * 37, c.Bytes));
        // One in-order stream: upload, relu, softmax, download, one after the other, pass after pass.
        var timeline = entries.Select(e => (e.Start, End: e.Start + e.Seconds)).Concat(copies.Select(c => (c.Start, End: c.Start + c.Seconds)))
            .OrderBy(t => t.Start).ToList();
        for (int i = 1; i < timeline.Count; i++)
            Assert.True(timeline[i].Start >= timeline[i - 1].End - 1e-7, $"event {i} starts at {timeline[i].Start:R} s, before event {i - 1} ended at {timeline[i - 1].End:R} s");
    }
}
