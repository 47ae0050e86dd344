using System.Globalization;
using System.Text.Json;
using Tp7.Engine.Features;
using Tp7.Engine.IO;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// The issue's parity claim, end to end through the built CLI: tools/reference_pipeline.py (PyTorch features +
/// scikit-learn LinearSVC) and `tp7 run` on the same weights and images give the same accuracy (within 0.1 point),
/// at least 99 % identical predictions (matched by path), and the same L2-normalised relu7 features.
/// </summary>
[Collection("reference")]
public sealed class PipelineParityTests(ReferenceFiles refs, ITestOutputHelper log)
{
    // A cut of data/demo: 5 classes x (8 train + 6 test) = 70 images, ~25 s of VGG16 per side on 2 quiet cores.
    const int Classes = 5, TrainPerClass = 8, TestPerClass = 6;

    /// <summary>Max |ours - torch| of an L2-normalised relu7 feature (rows have norm 1, entries ~1/64). The forward
    /// pass matches PyTorch to ~1e-6 relative (Vgg16ReferenceTests); 1e-5 leaves room for summation order.</summary>
    const double FeatureTolerance = 1e-5;

    [Fact]
    public void RunMatchesPyTorchAndScikitLearnOnDemoSubset()
    {
        using var tmp = new ScratchDir("tp7-parity");
        string ds = tmp["data"], refOut = tmp["reference"], ourOut = tmp["run"], cache = tmp["cache"];
        var classes = DemoData.CopySplit(ds, Classes, TrainPerClass, TestPerClass);
        int nTest = Classes * TestPerClass, nTrain = Classes * TrainPerClass;

        var clock = System.Diagnostics.Stopwatch.StartNew();
        Python.Run("reference_pipeline.py", "--weights", refs.Weights, "--data", ds, "--out", refOut);
        log.WriteLine($"reference_pipeline.py: {clock.Elapsed.TotalSeconds:F1} s");

        // A fresh cache (not --no-cache): `run` computes every feature itself and stores the raw rows, then `extract`
        // hands exactly those rows back as a file (70 from cache, no second forward pass).
        var run = CliRunner.RunOk(tmp.Path, ["run", "--data", ds, "--weights", refs.Weights, "--device", "cpu", "--out", ourOut], cache);
        log.WriteLine($"tp7 run: {run.Elapsed.TotalSeconds:F1} s\n{run.Stdout}");
        var extract = CliRunner.RunOk(tmp.Path,
            ["extract", "--data", ds, "--weights", refs.Weights, "--device", "cpu", "--out", tmp["ours.npy"]], cache);
        Assert.Matches($@"(?m)^0 computed \(.*, {nTrain + nTest} from cache,", extract.Stdout);

        // --- report.json against the reference's report.json
        using var ours = JsonDocument.Parse(File.ReadAllText(Path.Combine(ourOut, "report.json")));
        using var theirs = JsonDocument.Parse(File.ReadAllText(Path.Combine(refOut, "report.json")));
        var o = ours.RootElement;
        var t = theirs.RootElement;
        Assert.Equal(classes, Strings(o.GetProperty("classes")));
        Assert.Equal(classes, Strings(t.GetProperty("class_names")));
        Assert.Equal(nTest, o.GetProperty("num_test").GetInt32());
        Assert.Equal(nTrain, o.GetProperty("num_train").GetInt32());
        Assert.Equal(0, o.GetProperty("skipped").GetArrayLength());
        Assert.Equal(0, t.GetProperty("skipped").GetArrayLength());
        double accOurs = o.GetProperty("accuracy").GetDouble(), accTheirs = t.GetProperty("accuracy").GetDouble();
        log.WriteLine($"accuracy: tp7 {accOurs:P2}, PyTorch + scikit-learn {accTheirs:P2}");
        Assert.InRange(Math.Abs(accOurs - accTheirs), 0, 0.001);

        // --- predictions.csv, matched by path
        var predOurs = ReadPredictions(Path.Combine(ourOut, "predictions.csv"), p => Path.GetRelativePath(ds, p).Replace('\\', '/'));
        var predTheirs = ReadPredictions(Path.Combine(refOut, "predictions.csv"), p => p);
        Assert.Equal(nTest, predOurs.Count);
        Assert.Equal(predTheirs.Keys.Order(StringComparer.Ordinal), predOurs.Keys.Order(StringComparer.Ordinal));
        var differ = predOurs.Where(kv => kv.Value.Predicted != predTheirs[kv.Key].Predicted).ToList();
        foreach (var (path, (truth, predicted)) in differ)
            log.WriteLine($"  differs: {path} (true {truth}): tp7 {predicted}, reference {predTheirs[path].Predicted}");
        Assert.All(predOurs, kv => Assert.Equal(predTheirs[kv.Key].True, kv.Value.True));
        double agree = 1 - differ.Count / (double)nTest;
        log.WriteLine($"identical predictions: {agree:P1} ({nTest - differ.Count}/{nTest})");
        Assert.True(agree >= 0.99, $"{differ.Count} of {nTest} predictions differ from the reference's");

        // --- our report is consistent with our predictions
        var confusion = o.GetProperty("confusion_matrix").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt32()).ToArray()).ToArray();
        var expected = new int[Classes][];
        for (int i = 0; i < Classes; i++) expected[i] = new int[Classes];
        foreach (var (_, (truth, predicted)) in predOurs) expected[Array.IndexOf(classes, truth)][Array.IndexOf(classes, predicted)]++;
        Assert.Equal(expected, confusion);
        Assert.Equal(predOurs.Count(kv => kv.Value.True == kv.Value.Predicted) / (double)nTest, accOurs, 12);
        var perClass = o.GetProperty("per_class_recall");
        for (int k = 0; k < Classes; k++)
        {
            Assert.Equal(expected[k][k] / (double)expected[k].Sum(), perClass.GetProperty(classes[k]).GetDouble(), 12);
            Assert.Equal(expected[k][k] / (double)expected[k].Sum(), o.GetProperty("per_class")[k].GetProperty("recall").GetDouble(), 12);
        }
        var timings = o.GetProperty("timings_seconds");
        foreach (var stage in new[] { "extract_train", "extract_test", "train_svm", "evaluate" })
            Assert.True(timings.GetProperty(stage).GetDouble() >= 0, stage);
        Assert.True(timings.GetProperty("extract_train").GetDouble() > 0);
        Assert.Equal(0, timings.GetProperty("features_from_cache").GetInt32());
        var settings = o.GetProperty("settings");
        Assert.Equal("relu7", settings.GetProperty("layer").GetString());
        Assert.Equal(1.0, settings.GetProperty("C").GetDouble());
        Assert.True(settings.GetProperty("l2_normalized").GetBoolean());
        Assert.True(settings.GetProperty("random_weights").GetBoolean());
        Assert.Equal(refs.Weights, settings.GetProperty("weights").GetString());
        Assert.Equal(FeatureCache.HashFile(refs.Weights), settings.GetProperty("weights_sha256").GetString());

        // --- the other report files
        Assert.Equal("path,true,predicted", File.ReadLines(Path.Combine(ourOut, "predictions.csv")).First());
        AssertPng(Path.Combine(ourOut, "confusion.png"), minSide: 200);
        var html = File.ReadAllText(Path.Combine(ourOut, "index.html"));
        Assert.Contains(accOurs.ToString("P2", CultureInfo.InvariantCulture), html);
        Assert.Contains("confusion.png", html);

        // --- features: our relu7 rows (from the cache `run` filled) against the script's train.npy / test.npy
        var f = FeatureFile.Read(tmp["ours.npy"]);
        Assert.Equal(("relu7", true, 4096), (f.Layer, f.L2, f.D));
        var row = new Dictionary<string, int>();
        for (int i = 0; i < f.N; i++) row[Path.GetRelativePath(ds, f.Paths[i]).Replace('\\', '/')] = i;
        using var split = JsonDocument.Parse(File.ReadAllText(Path.Combine(refOut, "split.json")));
        var trainPaths = split.RootElement.GetProperty("train").EnumerateArray().Select(e => e.GetProperty("path").GetString()!).ToArray();
        var testPaths = File.ReadLines(Path.Combine(refOut, "predictions.csv")).Skip(1).Select(l => l.Split(',')[0]).ToArray();
        double worst = 0;
        string worstWhere = "";
        foreach (var (npy, paths) in new[] { ("train.npy", trainPaths), ("test.npy", testPaths) })
        {
            var (x, shape) = Npy.ReadFloat32(Path.Combine(refOut, npy));
            Assert.Equal([paths.Length, f.D], shape);
            for (int r = 0; r < paths.Length; r++)
            {
                var mine = f.Row(row[paths[r]]);
                for (int j = 0; j < f.D; j++)
                {
                    double e = Math.Abs(mine[j] - (double)x[r * f.D + j]);
                    if (!(e <= worst)) { worst = e; worstWhere = $"{paths[r]}[{j}]: tp7 {mine[j]}, torch {x[r * f.D + j]}"; }
                }
            }
        }
        log.WriteLine($"relu7 L2 features, {f.N} rows: max |tp7 - torch| = {worst:E2} at {worstWhere}");
        Assert.True(worst <= FeatureTolerance, $"max |diff| {worst:E2} > {FeatureTolerance:E0} at {worstWhere}");
    }

    static string[] Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToArray();

    /// <summary>path -> (true, predicted) from a predictions.csv (no quoted fields: the paths and class names here have no commas).</summary>
    static Dictionary<string, (string True, string Predicted)> ReadPredictions(string csv, Func<string, string> key)
    {
        var lines = File.ReadAllLines(csv);
        Assert.Equal("path,true,predicted", lines[0]);
        return lines.Skip(1).Where(l => l.Length > 0).Select(l => l.Split(','))
            .ToDictionary(c => key(c[0]), c => (c[1], c[2]));
    }

    /// <summary>A PNG that decodes, with both sides at least <paramref name="minSide"/> pixels.</summary>
    internal static void AssertPng(string path, int minSide)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.AsSpan().StartsWith(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }), $"{path}: no PNG signature");
        using var image = SixLabors.ImageSharp.Image.Load(bytes);
        Assert.True(image.Width >= minSide && image.Height >= minSide, $"{path}: {image.Width}x{image.Height}, expected both sides >= {minSide}");
        Assert.True(image.Width <= 8000 && image.Height <= 8000, $"{path}: {image.Width}x{image.Height} is implausibly large");
    }
}

/// <summary>
/// The issue's robustness claim through `tp7 run`: a dataset holding a truncated JPEG, a text file named .jpg, a zero-byte
/// file, a CMYK JPEG, a 16-bit PNG, an oversized image (and a cut PNG) runs to completion and reports each skipped
/// file with its reason, while the odd-but-valid images (CMYK, 16-bit, palette, RGBA, ...) are used.
/// </summary>
[Collection("reference")]
public sealed class HostileRunTests(ReferenceFiles refs, ITestOutputHelper log)
{
    [Fact]
    public void RunCompletesAndReportsEverySkippedFileWithItsReason()
    {
        using var tmp = new ScratchDir("tp7-hostile");
        // The same hostile class folders as train/ and as test/, so both extraction passes meet every bad file.
        var good = new List<string>();
        var bad = new Dictionary<string, string>();
        foreach (var part in new[] { "train", "test" })
        {
            var manifest = Python.Run("make_hostile_dataset.py", tmp[Path.Combine("data", part)]);
            foreach (var cols in manifest.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')))
                if (cols[0] == "good") good.Add(Path.GetFullPath(cols[1]));
                else bad[Path.GetFullPath(cols[1])] = cols[2];
        }
        Assert.Contains(good, p => p.EndsWith("b_cmyk.jpg"));
        Assert.Contains(good, p => p.EndsWith("d_gray16.png"));
        Assert.Contains(bad.Keys, p => p.EndsWith("e_huge.png"));

        var run = CliRunner.RunOk(tmp.Path,
            ["run", "--data", tmp["data"], "--weights", refs.Weights, "--device", "cpu", "--no-cache", "--out", tmp["out"]]);
        log.WriteLine($"tp7 run: {run.Elapsed.TotalSeconds:F1} s\n{run.Stdout}");

        using var report = JsonDocument.Parse(File.ReadAllText(tmp[Path.Combine("out", "report.json")]));
        var skipped = report.RootElement.GetProperty("skipped").EnumerateArray()
            .Select(s => (Path: s.GetProperty("path").GetString()!, Reason: s.GetProperty("reason").GetString()!)).ToList();
        foreach (var s in skipped) log.WriteLine($"  skipped {Path.GetRelativePath(tmp.Path, s.Path)}: {s.Reason}");
        Assert.Equal(bad.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value)),
            skipped.OrderBy(s => s.Path, StringComparer.Ordinal));
        foreach (var (path, reason) in bad) Assert.Contains($"skipped: {path}: {reason}", run.Stdout);

        // Every good image was used: counted in the report, and each test image has a prediction.
        int goodTrain = good.Count(p => p.Contains($"{Path.DirectorySeparatorChar}train{Path.DirectorySeparatorChar}"));
        Assert.Equal(goodTrain, report.RootElement.GetProperty("num_train").GetInt32());
        Assert.Equal(good.Count - goodTrain, report.RootElement.GetProperty("num_test").GetInt32());
        var predicted = File.ReadLines(tmp[Path.Combine("out", "predictions.csv")]).Skip(1).Select(l => l.Split(',')[0]).ToHashSet();
        Assert.Equal(good.Where(p => !p.Contains($"{Path.DirectorySeparatorChar}train{Path.DirectorySeparatorChar}")).ToHashSet(), predicted);
        Assert.Contains(predicted, p => p.EndsWith("b_cmyk.jpg"));
        Assert.Contains(predicted, p => p.EndsWith("d_gray16.png"));
        Assert.Contains($"{bad.Count} file(s) skipped", run.Stdout);
        Assert.False(Directory.Exists(tmp["tp7-cache"]), "--no-cache still created the feature cache");
    }
}
