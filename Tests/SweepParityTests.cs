using System.Text.Json;
using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Features;
using Tp7.Engine.Model;
using Tp7.Engine.Studies;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// The issue's parity claim for the sweep: tools/reference_sweep.py (PyTorch features, scikit-learn's PCA and
/// LinearSVC over the same folds) and Sweep.Run on our own features of the same images and weights give the same
/// best C per (layer, PCA size), CV means within 0.5 point, explained-variance ratios within 1e-4.
/// data/demo (10 classes × 20 train + 10 test Fashion-MNIST images) at 96×96 on both sides for speed (pool5, the
/// last max pool's output, is then 512 × 3 × 3 = 4608-D; fc6 still reads 25088 from the adaptive average pool).
/// </summary>
[Collection("reference")]
public sealed class SweepParityTests(ReferenceFiles refs, ITestOutputHelper log)
{
    const int Size = 96, Folds = 5;
    static readonly string[] Layers = ["pool5", "fc7", "relu7", "fc8"];
    static readonly double[] Cs = [0.01, 0.1, 1];
    static readonly int[] PcaSizes = [0, 16, 64];

    [Fact]
    public void SweepMatchesScikitLearnOnDemo()
    {
        using var tmp = new ScratchDir("tp7-sweep-parity");
        string ds = tmp["data"], refJson = tmp["reference.json"];
        DemoData.CopySplit(ds, 10, 20, 10);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        Python.RunWithTimeout(TimeSpan.FromMinutes(45), "reference_sweep.py", "--data", ds, "--weights", refs.Weights, "--size", $"{Size}",
            "--layers", string.Join(',', Layers), "--Cs", string.Join(',', Cs), "--folds", $"{Folds}", "--pca", string.Join(',', PcaSizes), "--out", refJson);
        log.WriteLine($"reference_sweep.py: {clock.Elapsed.TotalSeconds:F1} s");

        clock.Restart();
        var data = DatasetLoader.Open(Path.Combine(ds, "train"), Path.Combine(ds, "test"));
        var (train, test) = ExtractLayers(data, refs.Weights);
        log.WriteLine($"our features: {clock.Elapsed.TotalSeconds:F1} s");
        clock.Restart();
        var ours = Sweep.Run(train, test, new SweepSettings(Layers, Cs, Folds, PcaSizes));
        log.WriteLine($"Sweep.Run: {clock.Elapsed.TotalSeconds:F1} s ({ours.GridSeconds:F1} s grid, {ours.Threads} threads)");

        using var doc = JsonDocument.Parse(File.ReadAllText(refJson));
        var t = doc.RootElement;
        // the same rows in the same order, so the folds (a rule on row order) are the same
        Assert.Equal(t.GetProperty("train_paths").EnumerateArray().Select(p => p.GetString()),
            train[Layers[0]].Paths.Select(p => Path.GetRelativePath(ds, p).Replace('\\', '/')));
        var rows = t.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(Layers.Length * PcaSizes.Length * Cs.Length, rows.Count);
        Assert.Equal(rows.Count, ours.Rows.Count);

        double worstCv = 0, worstTest = 0;
        var flips = new List<string>();
        foreach (var (o, r) in ours.Rows.Zip(rows))
        {
            Assert.Equal((r.GetProperty("layer").GetString(), r.GetProperty("pca").GetInt32(), r.GetProperty("C").GetDouble(), r.GetProperty("dim").GetInt32()),
                (o.Layer, o.Pca, o.C, o.Dim));
            double cv = r.GetProperty("cv_mean").GetDouble(), te = r.GetProperty("test_accuracy").GetDouble();
            log.WriteLine($"{o.Layer,-6} pca {o.Pca,2} C={o.C,-5}: cv ours {o.CvMean:F4}±{o.CvStd:F4} sklearn {cv:F4}±{r.GetProperty("cv_std").GetDouble():F4}; " +
                          $"test ours {o.TestAccuracy:F3} sklearn {te:F3}; selected {(o.Selected ? "ours" : "")} {(r.GetProperty("selected").GetBoolean() ? "sklearn" : "")}");
            worstCv = Math.Max(worstCv, Math.Abs(o.CvMean - cv));
            worstTest = Math.Max(worstTest, Math.Abs(o.TestAccuracy - te));
            if (o.Selected != r.GetProperty("selected").GetBoolean()) flips.Add($"{o.Layer} pca {o.Pca} C={o.C}");
        }
        log.WriteLine($"max |Δ CV mean| {worstCv * 100:F2} points, max |Δ test accuracy| {worstTest * 100:F2} points; selection differs at [{string.Join("; ", flips)}]");

        double worstRatio = 0;
        var pcas = t.GetProperty("pca").EnumerateArray().ToList();
        Assert.Equal(Layers, pcas.Select(p => p.GetProperty("layer").GetString()));
        Assert.Equal(Layers, ours.Pca.Select(p => p.Layer));
        foreach (var (o, p) in ours.Pca.Zip(pcas))
        {
            double[] theirs = [.. p.GetProperty("explained_variance_ratio").EnumerateArray().Select(v => v.GetDouble())];
            Assert.Equal(theirs.Length, o.ExplainedVarianceRatio.Length);
            double w = theirs.Zip(o.ExplainedVarianceRatio).Max(z => Math.Abs(z.First - z.Second));
            log.WriteLine($"{o.Layer}: explained-variance ratios of {theirs.Length} components, first {o.ExplainedVarianceRatio[0]:F5} (sklearn {theirs[0]:F5}), max |Δ| {w:E2}");
            worstRatio = Math.Max(worstRatio, w);
        }

        Assert.Empty(flips);
        // 0.5 point is one held-out image of the 200 (each fold holds 40, the mean is over 5 folds); the slack keeps
        // exactly one image from failing on the rounding of 0.615 - 0.620.
        Assert.InRange(worstCv, 0, 0.005 + 1e-9);
        Assert.InRange(worstRatio, 0, 1e-4);
    }

    /// <summary>Our features of every layer from one forward pass per batch, L2-normalised as FeatureExtractor leaves them.</summary>
    static (Dictionary<string, FeatureSet> Train, Dictionary<string, FeatureSet> Test) ExtractLayers(Dataset data, string weights)
    {
        using var host = new HostDevice();
        var p = Engine.Imaging.Preprocessing.ImageNet with { Size = Size };
        using var model = new ImageModel(host, WeightsLocator.Load(weights), p);
        FeatureSet[] Part(IReadOnlyList<DatasetItem> items)
        {
            var rows = Layers.Select(_ => new float[items.Count][]).ToArray();
            var order = new Dictionary<DatasetItem, int>();
            for (int i = 0; i < items.Count; i++) order[items[i]] = i;
            var loader = new BatchLoader(items, p, 16);
            foreach (var b in loader.ReadBatches())
                using (b)
                {
                    if (b.Count == 0) continue;
                    var f = model.Forward(b.Data.AsSpan(0, b.Count * p.TensorLength), b.Count, Size, Size, Layers);
                    for (int li = 0; li < Layers.Length; li++)
                    {
                        int d = f[Layers[li]].Length / b.Count;
                        for (int j = 0; j < b.Count; j++)
                        {
                            var row = f[Layers[li]].AsSpan(j * d, d).ToArray();
                            FeatureExtractor.Normalize(row);
                            rows[li][order[b.Items[j]]] = row;
                        }
                    }
                }
            Assert.Empty(loader.Skipped);
            return [.. Layers.Select((l, li) =>
            {
                int d = rows[li][0].Length;
                var X = new float[items.Count * d];
                for (int i = 0; i < items.Count; i++) rows[li][i].CopyTo(X, i * d);
                return new FeatureSet(X, items.Count, d, [.. items.Select(it => it.Path)], [.. items.Select(it => it.Label)], data.Classes, l, true,
                    "", [], new ExtractionStats(items.Count, 0, items.Count, 0, 0, 0, 0, 0));
            })];
        }
        var tr = Part(data.Train);
        var te = Part(data.Test);
        return (Layers.Select((l, i) => (l, tr[i])).ToDictionary(x => x.l, x => x.Item2), Layers.Select((l, i) => (l, te[i])).ToDictionary(x => x.l, x => x.Item2));
    }
}
