using System.Text.Json;
using System.Text.Json.Nodes;
using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>A tiny class-folder dataset (2 classes x 3 demo images) and, once, its relu7 features through `tp7 extract`.</summary>
public sealed class TinyDataset : IDisposable
{
    public const int Classes = 2, PerClass = 3;
    readonly ScratchDir tmp = new("tp7-cli");
    readonly object gate = new();
    CliResult? firstExtract;

    public string Dir { get; }
    public string Cache => tmp["cache"];
    public string Features => tmp[Path.Combine("features", "tiny.npy")];
    public string[] ClassNames { get; }

    public TinyDataset()
    {
        Dir = tmp["tiny"];
        ClassNames = DemoData.CopyClassFolders(Dir, Classes, PerClass);
    }

    /// <summary>`tp7 extract` of every image into <see cref="Features"/> with a fresh cache, done by the first test that asks.</summary>
    public CliResult Extract(string weights)
    {
        lock (gate)
            return firstExtract ??= CliRunner.RunOk(tmp.Path,
                ["extract", "--data", Dir, "--weights", weights, "--device", "cpu", "--batch", "4", "--out", Features], Cache);
    }

    public string Work(string name)
    {
        var d = tmp[name];
        Directory.CreateDirectory(d);
        return d;
    }

    public void Dispose() => tmp.Dispose();
}

/// <summary>The `tp7` verbs as a user runs them: the built binary in a temp folder, its exit code, stdout and stderr.</summary>
[Collection("reference")]
public sealed class CliTests(ReferenceFiles refs, TinyDataset tiny, ITestOutputHelper log) : IClassFixture<TinyDataset>
{
    // ---------------------------------------------------------------- info

    [Fact]
    public void InfoJsonDescribesVgg16LayerByLayer()
    {
        var r = CliRunner.RunOk(tiny.Work("info"), ["info", "--json"]);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        // torchvision's documented count for vgg16 (https://pytorch.org/vision/stable/models/generated/torchvision.models.vgg16.html).
        Assert.Equal(138_357_544, root.GetProperty("total_parameters").GetInt64());
        Assert.Equal(14_714_688, root.GetProperty("conv_parameters").GetInt64());
        Assert.Equal(123_642_856, root.GetProperty("fc_parameters").GetInt64());
        Assert.Equal([3, 224, 224], root.GetProperty("input").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Null(root.GetProperty("weights_verified").GetString());

        // 31 modules of `features`, avgpool, flatten, 7 of `classifier`.
        var layers = root.GetProperty("layers").EnumerateArray().ToList();
        Assert.Equal(40, layers.Count);
        var kinds = layers.GroupBy(l => l.GetProperty("kind").GetString()!).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(new Dictionary<string, int>
        {
            ["Conv"] = 13, ["Relu"] = 15, ["MaxPool"] = 5, ["AdaptiveAvgPool"] = 1, ["Flatten"] = 1, ["Linear"] = 3, ["Dropout"] = 2,
        }, kinds);

        // Shapes against PyTorch's activations of the reference photos at 224x224; parameters against the tensors of
        // the weights file tools/convert_weights.py wrote; multiply-adds from the shapes.
        using var activations = ReferenceFiles.Open(refs.Photos224);
        using var weights = SafeTensorsFile.Open(refs.Weights);
        int[] input = [3, 224, 224];
        long sumParams = 0, sumMacs = 0;
        int checkedShapes = 0;
        foreach (var l in layers)
        {
            string tap = l.GetProperty("tap").GetString()!, module = l.GetProperty("module").GetString()!, kind = l.GetProperty("kind").GetString()!;
            var shape = l.GetProperty("output_shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            if (activations.Contains("tap/" + tap))
            {
                // (N, C, H, W) for maps, (N, D) for vectors, which tp7 lists as (D, 1, 1).
                var torch = activations.Info("tap/" + tap).Shape;
                int[] want = torch.Count == 4 ? [(int)torch[1], (int)torch[2], (int)torch[3]] : [(int)torch[1], 1, 1];
                Assert.True(want.SequenceEqual(shape), $"{tap}: tp7 says [{string.Join(", ", shape)}], PyTorch's activation is [{string.Join(", ", torch)}]");
                checkedShapes++;
            }
            long parameters = l.GetProperty("parameters").GetInt64();
            long inFile = weights.Contains(module + ".weight")
                ? weights.Info(module + ".weight").Shape.Aggregate(1L, (a, b) => a * b) + weights.Info(module + ".bias").Shape[0] : 0;
            Assert.True(parameters == inFile, $"{module} ({tap}): {parameters} parameters, the weights file holds {inFile}");
            long macs = kind switch
            {
                "Conv" => (long)shape[0] * shape[1] * shape[2] * input[0] * 9,
                "Linear" => (long)shape[0] * input[0] * input[1] * input[2],
                _ => 0,
            };
            Assert.True(macs == l.GetProperty("macs").GetInt64(), $"{tap}: {l.GetProperty("macs")} multiply-adds, expected {macs}");
            sumParams += parameters;
            sumMacs += macs;
            input = shape;
        }
        Assert.Equal(138_357_544, sumParams);
        Assert.True(checkedShapes >= 35, $"only {checkedShapes} layers had a PyTorch activation to compare with");
        Assert.Equal(sumMacs, root.GetProperty("total_macs").GetInt64());
        Assert.Equal([4096, 1, 1], layers.Single(l => l.GetProperty("tap").GetString() == "relu7").GetProperty("output_shape").EnumerateArray().Select(e => e.GetInt32()));
    }

    [Fact]
    public void InfoVerifiesGoodWeights()
    {
        var r = CliRunner.RunOk(tiny.Work("info-ok"), ["info", "--weights", refs.Weights]);
        Assert.Contains($"weights verified: {refs.Weights}: 138,357,544 parameters in 32 tensors, all shapes match VGG16", r.Stdout);
        Assert.Contains("total parameters: 138,357,544 (convolutions 14,714,688, fully connected 123,642,856)", r.Stdout);
    }

    public static TheoryData<string> BadWeights => new() { "truncated", "wrong-shape", "missing", "empty", "text" };

    /// <summary>Each bad file: non-zero exit, nothing on stdout, exactly one line on stderr naming the file (and the tensor).</summary>
    [Theory]
    [MemberData(nameof(BadWeights))]
    public void InfoRejectsBadWeightsWithOneLine(string kind)
    {
        string dir = tiny.Work("bad-" + kind);
        string path = Path.Combine(dir, kind + ".safetensors");
        string[] mustName;
        switch (kind)
        {
            case "truncated":
                // The header and the first tensors survive; a later tensor's data runs past the end.
                using (var src = File.OpenRead(refs.Weights))
                using (var dst = File.Create(path))
                {
                    var buffer = new byte[4 << 20];
                    src.ReadExactly(buffer);
                    dst.Write(buffer);
                }
                mustName = [path, "tensor 'features.", "truncated"];
                break;
            case "wrong-shape":
                WriteVgg16With(path, "classifier.0.weight", [4096, 9216]);
                mustName = [path, "'classifier.0.weight'", "[4096, 25088]", "[4096, 9216]"];
                break;
            case "missing":
                mustName = [path, "no such weights file"];
                break;
            case "empty":
                File.WriteAllBytes(path, []);
                mustName = [path, "0 bytes"];
                break;
            default:
                File.WriteAllText(path, "this is not a safetensors file, just some text that is long enough\n");
                mustName = [path];
                break;
        }
        var r = CliRunner.Run(dir, ["info", "--weights", path]);
        log.WriteLine(r.Stderr.Trim());
        Assert.True(r.ExitCode != 0, r.ToString());
        Assert.True(r.Stdout.Length == 0, r.ToString());
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr:\n{r.Stderr}");
        Assert.StartsWith("tp7 info: ", lines[0]);
        foreach (var s in mustName) Assert.Contains(s, lines[0]);
        Assert.DoesNotContain("   at ", lines[0]);   // no stack trace without --verbose
    }

    /// <summary>Every VGG16 tensor, zero-filled, with one key's shape replaced (e.g. a classifier built for 96x96 inputs).</summary>
    static void WriteVgg16With(string path, string key, long[] shape)
    {
        var specs = Vgg16Architecture.ParameterSpecs.Select(p => p.Key == key ? (p.Key, Shape: shape) : (p.Key, p.Shape)).ToList();
        long largest = specs.Max(s => s.Shape.Aggregate(1L, (a, b) => a * b));
        var zeros = new float[largest];   // one buffer sliced for every tensor
        SafeTensorsWriter.Write(path, specs.Select(s => (s.Key, s.Shape, new ReadOnlyMemory<float>(zeros, 0, (int)s.Shape.Aggregate(1L, (a, b) => a * b)))));
    }

    // ---------------------------------------------------------------- classify, featuremaps

    [Fact]
    public void ClassifyJsonGivesPyTorchsTop5()
    {
        var r = CliRunner.RunOk(tiny.Work("classify"), ["classify", .. refs.Photos, "--json", "--weights", refs.Weights, "--device", "cpu"]);
        using var doc = JsonDocument.Parse(r.Stdout);
        var results = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(refs.Photos.Length, results.Count);

        using var file = ReferenceFiles.Open(refs.Photos224);
        var logits = file.ReadFloat32("logits");
        var torch = new float[logits.Length];
        Tp7.Engine.Kernels.Activations.SoftmaxHost(torch, logits, refs.Photos.Length, 1000);
        for (int i = 0; i < results.Count; i++)
        {
            var e = results[i];
            Assert.Equal(refs.Photos[i], e.GetProperty("path").GetString());
            var top = e.GetProperty("top").EnumerateArray()
                .Select(t => (Index: t.GetProperty("index").GetInt32(), Name: t.GetProperty("name").GetString()!, Prob: t.GetProperty("prob").GetDouble())).ToList();
            Assert.Equal(5, top.Count);
            Assert.All(top, t => Assert.Equal(ImageNetClasses.Names[t.Index], t.Name));
            Assert.True(top.Zip(top.Skip(1)).All(p => p.First.Prob >= p.Second.Prob), "top-5 not sorted by probability");
            Assert.InRange(top.Sum(t => t.Prob), 0, 1 + 1e-6);

            var row = torch.AsSpan(i * 1000, 1000).ToArray();
            var want = Enumerable.Range(0, 1000).OrderByDescending(j => row[j]).ThenBy(j => j).Take(5).ToArray();
            log.WriteLine($"{Path.GetFileName(refs.Photos[i])}: tp7 {string.Join(", ", top.Select(t => $"{t.Index}:{t.Prob:F6}"))}");
            log.WriteLine($"{Path.GetFileName(refs.Photos[i])}: torch {string.Join(", ", want.Select(j => $"{j}:{row[j]:F6}"))}");
            Assert.Equal(want, top.Select(t => t.Index));
            // Random-init probabilities are all ~1e-3, so 1e-4 absolute says little: also report the relative error.
            double worstRel = top.Max(t => Math.Abs(t.Prob - row[t.Index]) / row[t.Index]);
            log.WriteLine($"  max |tp7 - torch| / torch over the top 5: {worstRel:E2}");
            foreach (var t in top) Assert.InRange(Math.Abs(t.Prob - row[t.Index]), 0, 1e-4);
            Assert.InRange(worstRel, 0, 1e-3);
        }
    }

    /// <summary>`tp7 selftest` is what a GPU machine runs; on ILGPU's CPU accelerator it must check every kernel version.</summary>
    [Fact]
    public void SelfTestChecksEveryKernelVersionOnTheCpuAccelerator()
    {
        string dir = tiny.Work("selftest");
        var r = CliRunner.RunOk(dir, ["selftest", "--device", "ilgpu-cpu"]);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.DoesNotContain(lines, l => l.StartsWith("FAIL", StringComparison.Ordinal));
        foreach (var version in new[] { "gemm V1Naive", "gemm V2Tiled", "gemm V3Tiled128", "conv2d V1Naive", "conv2d V2ImplicitGemm",
                     "conv2d V4ImplicitGemm128", "conv2d_backward_data V1Naive", "conv2d_backward_data V2Tiled", "conv2d_backward_data V3Tiled128",
                     "conv2d_backward_weight V1Naive", "conv2d_backward_weight V2Tiled", "conv2d_backward_weight V3Tiled128" })
            Assert.Contains(lines, l => l.Contains(version, StringComparison.OrdinalIgnoreCase));
        var summary = Assert.Single(lines, l => l.StartsWith("selftest on ", StringComparison.Ordinal));
        // The tensor-core versions need CUDA: each is a SKIP line with the reason, counted apart from passed and failed.
        Assert.Matches(@": [1-9][0-9]+ passed, 0 failed, [1-9][0-9]* skipped \(the SKIP lines say why\)$", summary.TrimEnd());
        Assert.All(lines.Where(l => l.StartsWith("SKIP", StringComparison.Ordinal)), l => Assert.Contains("compute capability 8.0", l));
    }

    /// <summary>`tp7 bench forward` on a non-host device validates its logits against the host backend before timing.</summary>
    [Fact]
    public void BenchForwardValidatesAgainstTheHostBackend()
    {
        string dir = tiny.Work("bench");
        var r = CliRunner.RunOk(dir, ["bench", "forward", "--device", "ilgpu-cpu", "--size", "32", "--batch", "1", "--reps", "1", "--weights", refs.Weights]);
        Assert.Matches(@"validation: outputs of 1 image\(s\) vs host backend \(fp32\): max \|diff\| \S+, \S+ of max \|value\| \(limit \S+: ok\)", r.Stdout);
        Assert.Matches(@"(?m)^\s+1\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s*$", r.Stdout);
    }

    /// <summary>`tp7 bench train` on a device other than the host checks a training step against the host first.</summary>
    [Fact]
    public void BenchTrainValidatesAStepAgainstTheHostBackend()
    {
        string dir = tiny.Work("bench-train");
        var r = CliRunner.RunOk(dir, ["bench", "train", "--device", "ilgpu-cpu", "--size", "32", "--batch", "1", "--reps", "1", "--weights", refs.Weights]);
        Assert.Matches(@"validation: loss \S+ vs host \S+, head gradient max \|diff\| \S+ of its max \(ok\)", r.Stdout);
        Assert.Matches(@"median [0-9.]+ s/step, [0-9.]+ img/s", r.Stdout);
    }

    [Fact]
    public void FeatureMapsWritesAPng()
    {
        string dir = tiny.Work("featuremaps");
        string png = Path.Combine(dir, "maps.png");
        var r = CliRunner.RunOk(dir, ["featuremaps", refs.Photos[0], "--layer", "conv1_1", "--out", png, "--weights", refs.Weights, "--device", "cpu"]);
        Assert.Contains($"wrote {png}: 64 of 64 maps of conv1_1 (224x224)", r.Stdout);
        PipelineParityTests.AssertPng(png, minSide: 224);

        // A vector layer has no maps: one line, before any weights are loaded.
        var bad = CliRunner.Run(dir, ["featuremaps", refs.Photos[0], "--layer", "fc7", "--out", png, "--weights", refs.Weights, "--device", "cpu"]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal(["tp7 featuremaps: fc7 is a vector of 4096 values, not feature maps; pick a convolutional or pooling layer"], bad.StderrLines);
    }

    // ---------------------------------------------------------------- extract, svm

    [Fact]
    public void ExtractWritesL2RowsAndASecondExtractComesFromTheCache()
    {
        int n = TinyDataset.Classes * TinyDataset.PerClass;
        var first = tiny.Extract(refs.Weights);
        Assert.Contains($"wrote {tiny.Features}: {n} x 4096 (relu7, L2-normalised)", first.Stdout);
        Assert.Matches($@"(?m)^{n} computed \(.*, 0 from cache,", first.Stdout);
        var f = Tp7.Engine.Features.FeatureFile.Read(tiny.Features);
        Assert.Equal(tiny.ClassNames, f.Classes);
        Assert.Equal(Enumerable.Range(0, TinyDataset.Classes).SelectMany(k => Enumerable.Repeat(k, TinyDataset.PerClass)), f.Labels);
        for (int i = 0; i < f.N; i++)
        {
            double norm = Math.Sqrt(f.Row(i).ToArray().Sum(v => (double)v * v));
            Assert.InRange(norm, 1 - 1e-5, 1 + 1e-5);
            Assert.All(f.Row(i).ToArray(), v => Assert.True(v >= 0, "relu7 is non-negative"));
        }

        // Same images, weights and layer: served from the cache, byte-identical files.
        string dir = tiny.Work("extract-again");
        string again = Path.Combine(dir, "again.npy");
        var second = CliRunner.RunOk(dir, ["extract", "--data", tiny.Dir, "--weights", refs.Weights, "--device", "cpu", "--out", again], tiny.Cache);
        log.WriteLine($"first extract {first.Elapsed.TotalSeconds:F1} s, from cache {second.Elapsed.TotalSeconds:F1} s");
        Assert.Matches($@"(?m)^0 computed \(.*, {n} from cache,", second.Stdout);
        Assert.Equal(File.ReadAllBytes(tiny.Features), File.ReadAllBytes(again));
        Assert.Equal(File.ReadAllText(Path.ChangeExtension(tiny.Features, ".json")), File.ReadAllText(Path.ChangeExtension(again, ".json")));

        // --no-l2 (also from the cache, which holds raw rows): norms are not 1, and scaling them gives the L2 rows.
        string raw = Path.Combine(dir, "raw.npy");
        var third = CliRunner.RunOk(dir, ["extract", "--data", tiny.Dir, "--weights", refs.Weights, "--device", "cpu", "--no-l2", "--out", raw], tiny.Cache);
        Assert.Matches($@"(?m)^0 computed \(.*, {n} from cache,", third.Stdout);
        Assert.Contains($"{n} x 4096 (relu7)", third.Stdout);
        var g = Tp7.Engine.Features.FeatureFile.Read(raw);
        Assert.False(g.L2);
        for (int i = 0; i < g.N; i++)
        {
            var row = g.Row(i).ToArray();
            double norm = Math.Sqrt(row.Sum(v => (double)v * v));
            Assert.True(Math.Abs(norm - 1) > 1e-3, $"row {i} of --no-l2 features has norm {norm}");
            for (int j = 0; j < g.D; j++) Assert.InRange(Math.Abs(row[j] / norm - f.Row(i)[j]), 0, 1e-6);
        }
    }

    [Fact]
    public void SvmTrainEvalPredictOnExtractedFeatures()
    {
        tiny.Extract(refs.Weights);
        string dir = tiny.Work("svm");
        string model = Path.Combine(dir, "model.safetensors");
        var train = CliRunner.RunOk(dir, ["svm", "train", "--features", tiny.Features, "--out", model]);
        // Two classes: one binary classifier; 6 separable points in 4096 dimensions are fitted exactly.
        Assert.Contains("trained 1 classifier(s) on 6 x 4096", train.Stdout);
        Assert.Contains("training accuracy 100.00 %", train.Stdout);
        Assert.True(File.Exists(model));

        var eval = CliRunner.RunOk(dir, ["svm", "eval", "--model", model, "--features", tiny.Features]);
        log.WriteLine(eval.Stdout);
        foreach (var c in tiny.ClassNames) Assert.Contains(c, eval.Stdout);
        Assert.Matches(@"(?m)^\s*accuracy\s+1\.0000\s+6\s*$", eval.Stdout);

        var predict = CliRunner.RunOk(dir, ["svm", "predict", "--model", model, "--features", tiny.Features]);
        var lines = predict.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("path,true,predicted", lines[0]);
        var f = Tp7.Engine.Features.FeatureFile.Read(tiny.Features);
        Assert.Equal(f.Paths.Select((p, i) => $"{p},{f.Classes[f.Labels[i]]},{f.Classes[f.Labels[i]]}"), lines.Skip(1));

        // Features whose classes are not the model's: one line naming the file and both class lists.
        string other = Path.Combine(dir, "other.npy");
        File.Copy(tiny.Features, other);
        var side = JsonNode.Parse(File.ReadAllText(Path.ChangeExtension(tiny.Features, ".json")))!;
        side["classes"] = new JsonArray(tiny.ClassNames.Select(c => (JsonNode)JsonValue.Create(c + "_other")!).ToArray());
        File.WriteAllText(Path.ChangeExtension(other, ".json"), side.ToJsonString());
        var mismatch = CliRunner.Run(dir, ["svm", "eval", "--model", model, "--features", other]);
        Assert.Equal(1, mismatch.ExitCode);
        Assert.Equal("", mismatch.Stdout);
        var err = Assert.Single(mismatch.StderrLines);
        Assert.Contains(other, err);
        Assert.Contains($"[{string.Join(", ", tiny.ClassNames)}]", err);
        Assert.Contains("differ from the model's", err);
    }

    /// <summary>An error of a nested verb names the whole verb ("tp7 svm eval: ..."), as the user typed it.</summary>
    [Fact]
    public void NestedVerbErrorsNameTheWholeVerb()
    {
        string dir = tiny.Work("svm-errors");
        string missing = Path.Combine(dir, "missing.safetensors");
        foreach (var verb in new[] { "eval", "predict" })
        {
            var r = CliRunner.Run(dir, ["svm", verb, "--model", missing, "--features", Path.Combine(dir, "missing.npy")]);
            Assert.Equal(1, r.ExitCode);
            var err = Assert.Single(r.StderrLines);
            Assert.StartsWith($"tp7 svm {verb}: {missing}: ", err);
        }
    }

    // ---------------------------------------------------------------- run

    [Fact]
    public void RunSplitsAClassFolderDatasetAndWritesTheReport()
    {
        string dir = tiny.Work("run");
        string outDir = Path.Combine(dir, "report");
        string cache = Path.Combine(dir, "cache");
        var r = CliRunner.RunOk(dir,
            ["run", "--data", tiny.Dir, "--train-per-class", "2", "--weights", refs.Weights, "--device", "cpu", "--no-cache", "--out", outDir], cache);
        log.WriteLine($"{r.Elapsed.TotalSeconds:F1} s\n{r.Stdout}");
        Assert.Contains($"{TinyDataset.Classes} classes, {2 * TinyDataset.Classes} train, {(TinyDataset.PerClass - 2) * TinyDataset.Classes} test images", r.Stdout);
        Assert.Contains("0 features from cache; 0 file(s) skipped", r.Stdout);
        Assert.False(Directory.Exists(cache), "--no-cache wrote the feature cache");
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "report.json")));
        var root = report.RootElement;
        Assert.Equal(4, root.GetProperty("num_train").GetInt32());
        Assert.Equal(2, root.GetProperty("num_test").GetInt32());
        Assert.Equal(tiny.ClassNames, root.GetProperty("classes").EnumerateArray().Select(e => e.GetString()));
        Assert.Contains("split 2 per class (seed 0)", root.GetProperty("settings").GetProperty("layout").GetString());
        double acc = root.GetProperty("accuracy").GetDouble();
        Assert.Contains($"accuracy: {acc.ToString("P2", System.Globalization.CultureInfo.InvariantCulture)}", r.Stdout);
        foreach (var file in new[] { "predictions.csv", "confusion.png", "index.html" }) Assert.True(File.Exists(Path.Combine(outDir, file)), file);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(outDir, "predictions.csv")).Length);

        // A split that leaves a class without test images is refused in one line.
        var tooMany = CliRunner.Run(dir, ["run", "--data", tiny.Dir, "--train-per-class", "3", "--weights", refs.Weights, "--device", "cpu", "--no-cache", "--out", outDir], cache);
        Assert.Equal(1, tooMany.ExitCode);
        var err = Assert.Single(tooMany.StderrLines);
        Assert.StartsWith("tp7 run: ", err);
        Assert.Contains(tiny.Dir, err);
    }
}
