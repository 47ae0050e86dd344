using System.Diagnostics;
using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Features;
using Tp7.Engine.Graph;
using Tp7.Engine.Model;
using Tp7.Engine.Training;

namespace Tp7.Engine.Profiling;

/// <param name="Images">Run the extraction pipeline on these files (decode on the loader's workers, staged uploads on a
/// GPU), one batch per repetition, cycling through them; null: a random input uploaded by the executor.</param>
/// <param name="Backward">Each repetition is a training pass: forward in train mode, loss, backward through every parameter.</param>
/// <param name="Precision">The precision whose peak the achieved rate is compared with (the device's --precision: conv, linear and matmul run in it, the rest in fp32).</param>
public sealed record ProfileOptions(int Batch, int Size, int Reps, int Warmup, bool Backward = false,
    IReadOnlyList<DatasetItem>? Images = null, string Precision = "fp32", int Seed = 0);

/// <summary>Kernel time, work and achieved rates of one group of launches (a layer, an op kind, or all of them).</summary>
public sealed record KernelStats(string Name, string Op, string Shape, int Calls, double Seconds, double Flops, double Bytes)
{
    public double MeanSeconds => Calls > 0 ? Seconds / Calls : 0;
    public double GFlops => Seconds > 0 ? Flops / Seconds / 1e9 : 0;
    public double GBytes => Seconds > 0 ? Bytes / Seconds / 1e9 : 0;
    /// <summary>Fraction of the FLOP peak, null without a peak.</summary>
    public double? FlopFraction(double? peak) => peak is > 0 && Seconds > 0 ? Flops / Seconds / peak : null;
    public double? BandwidthFraction(double? peak) => peak is > 0 && Seconds > 0 ? Bytes / Seconds / peak : null;
}

/// <param name="Wall">Host wall-clock seconds of the profiled repetitions (warm-up excluded).</param>
/// <param name="Passes">Passes profiled (repetitions; a training repetition is one forward and one backward pass).</param>
/// <param name="Nodes">Launches one forward pass makes (non-view nodes of its plan), and one backward pass where asked.</param>
public sealed record ProfileResult(string Model, string Device, string Timing, DevicePeak? Peak, ProfileOptions Options,
    IReadOnlyList<KernelStats> Layers, IReadOnlyList<KernelStats> Kinds, KernelStats Total,
    IReadOnlyList<KernelStats> Copies, double Wall, int ForwardNodes, int BackwardNodes, string InputSource);

/// <summary>
/// `tp7 profile`'s engine: warms a model up, then runs it <see cref="ProfileOptions.Reps"/> times under a
/// <see cref="LayerProfiler"/> through the same code users run (the executor; with images, the feature extractor and
/// its batch loader) and sums the launches per layer and per op kind.
/// </summary>
public static class ModelProfile
{
    public static ProfileResult Run(ImageModel model, LayerProfiler profiler, ProfileOptions o)
    {
        if (o.Batch < 1 || o.Reps < 1 || o.Warmup < 0)
            throw new ArgumentException($"--batch and --reps must be at least 1 and --warmup at least 0 (got {o.Batch}, {o.Reps}, {o.Warmup})");
        var shape = new Shape(o.Batch, 3, o.Size, o.Size);
        string output = model.Graph.Output;
        var rng = new Random(o.Seed);
        double wall;
        string source;
        int forwardNodes, backwardNodes = 0;

        if (o.Backward)
        {
            if (model.NumClasses < 2)
                throw new ArgumentException($"--backward needs a model that ends in class logits; {model.Name}'s output is {model.LayerShape(output, 1, o.Size)}");
            var x = RandomInput(rng, shape.Elements);
            var labels = Enumerable.Range(0, o.Batch).Select(_ => rng.Next(model.NumClasses)).ToArray();
            using var trainer = new Trainer(model.Network, model.Network.Parameters.Entries.Select(e => e.Name).ToList(), null, (ulong)o.Seed);
            var plan = trainer.Plan(shape);
            forwardNodes = plan.ForwardNodes.Count(i => !plan.IsView(i));
            backwardNodes = plan.BackwardNodes.Count(i => !plan.IsView(i));
            for (int i = 0; i < o.Warmup; i++) Step(trainer, x, shape, labels, i);
            model.Profiler = profiler;
            try
            {
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < o.Reps; i++)
                {
                    long r0 = Stopwatch.GetTimestamp();
                    Step(trainer, x, shape, labels, o.Warmup + i);
                    profiler.SpanSince($"training pass {i}", "pipeline", r0);
                }
                model.Device.Synchronize();
                wall = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            finally { model.Profiler = null; }
            source = "random input and labels, training pass (zero_grad, forward in train mode, softmax cross-entropy, backward)";
        }
        else if (o.Images is { Count: > 0 } images)
        {
            var plan = model.Network.Plan(new PlanRequest(shape, [output]));
            forwardNodes = plan.ForwardNodes.Count(i => !plan.IsView(i));
            var pre = model.Preprocessing with { Size = o.Size };
            var extractor = new FeatureExtractor(model, "profile", output, l2: false, batchSize: o.Batch, preprocessing: pre);
            var classes = new[] { "profile" };
            List<DatasetItem> Cycle(int start, int batches) =>
                [.. Enumerable.Range(start * o.Batch, batches * o.Batch).Select(k => images[k % images.Count])];
            if (o.Warmup > 0) extractor.Extract(Cycle(0, o.Warmup), classes);
            model.Profiler = profiler;
            try
            {
                long t0 = Stopwatch.GetTimestamp();
                var set = extractor.Extract(Cycle(o.Warmup, o.Reps), classes);
                if (set.Skipped.Count > 0)
                    throw new InvalidDataException($"--data: {set.Skipped[0].Path}: {set.Skipped[0].Reason} ({set.Skipped.Count} files could not be read); profile a folder of readable images");
                wall = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            finally { model.Profiler = null; }
            source = $"{images.Count} images through the extraction pipeline (decode and preprocess on {Environment.ProcessorCount} workers" +
                     (model.Device is IlgpuDevice ? ", page-locked staging, uploads on a second stream)" : ")");
        }
        else
        {
            var plan = model.Network.Plan(new PlanRequest(shape, [output]));
            forwardNodes = plan.ForwardNodes.Count(i => !plan.IsView(i));
            var x = RandomInput(rng, shape.Elements);
            for (int i = 0; i < o.Warmup; i++) model.Forward(x, o.Batch, o.Size, o.Size, [output]);
            model.Profiler = profiler;
            try
            {
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < o.Reps; i++)
                {
                    long r0 = Stopwatch.GetTimestamp();
                    model.Forward(x, o.Batch, o.Size, o.Size, [output]);
                    profiler.SpanSince($"forward pass {i}", "pipeline", r0);
                }
                wall = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            finally { model.Profiler = null; }
            source = "random input, uploaded by the executor";
        }

        var entries = profiler.Entries;
        var layers = entries.GroupBy(e => (e.Layer, e.Op))
            .Select(g => new KernelStats(g.Key.Layer, g.Key.Op, g.First().Shape, g.Count(), g.Sum(e => e.Seconds), g.Sum(e => e.Flops), g.Sum(e => e.Bytes)))
            .ToList();
        var kinds = entries.GroupBy(e => e.Op)
            .Select(g => new KernelStats(g.Key, g.Key, "", g.Count(), g.Sum(e => e.Seconds), g.Sum(e => e.Flops), g.Sum(e => e.Bytes)))
            .OrderByDescending(k => k.Seconds).ToList();
        var total = new KernelStats("total", "", "", entries.Count, entries.Sum(e => e.Seconds), entries.Sum(e => e.Flops), entries.Sum(e => e.Bytes));
        var copies = profiler.Copies.GroupBy(c => (c.Name, c.Track))
            .Select(g => new KernelStats(g.Key.Name, g.Key.Track, "", g.Count(), g.Sum(c => c.Seconds), 0, g.Sum(c => c.Bytes)))
            .ToList();
        return new ProfileResult(model.Name, model.Device.Name, profiler.Timing, DevicePeaks.For(model.Device), o, layers, kinds, total, copies,
            wall, forwardNodes, backwardNodes, source);
    }

    static void Step(Trainer trainer, float[] x, Shape shape, int[] labels, long step)
    {
        trainer.Network.Parameters.ZeroGrad();
        trainer.ForwardBackward(x, shape, labels, step);
    }

    static float[] RandomInput(Random rng, long elements)
    {
        var x = new float[elements];
        for (long i = 0; i < elements; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }
}
