using System.Runtime.InteropServices;
using System.Text.Json;
using Google.Protobuf;
using Tp7.Engine.Features;
using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Engine.Svm;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// What a new user hits verb by verb: every bad option fails at once, in the CLI's words (the option as typed, never a
/// C# member name), before any dataset is listed or weight is read; the weights lookup works from any folder; and the
/// outputs the README promises (svm eval's confusion matrix and --json, svm predict's true label and --scores,
/// devices --json, selftest without a GPU).
/// </summary>
public sealed class CliValidationTests(ITestOutputHelper log)
{
    static string Photo => Path.Combine(RepoPaths.SklearnImages, "china.jpg");

    /// <summary>Bad values refused while parsing: exit 2, these lines and the pointer to --help, nothing on stdout.</summary>
    [Theory]
    [InlineData(new[] { "run", "--C", "0" }, new[] { "tp7 run: --C must be a positive number, got 0" })]
    [InlineData(new[] { "run", "--C", "-1" }, new[] { "tp7 run: --C must be a positive number, got -1" })]
    [InlineData(new[] { "run", "--batch", "0" }, new[] { "tp7 run: --batch must be at least 1, got 0" })]
    [InlineData(new[] { "run", "--train-per-class", "0" }, new[] { "tp7 run: --train-per-class must be at least 1, got 0" })]
    [InlineData(new[] { "classify", "--top", "0", "x.jpg" }, new[] { "tp7 classify: --top must be at least 1, got 0" })]
    [InlineData(new[] { "classify", "--batch", "0", "x.jpg" }, new[] { "tp7 classify: --batch must be at least 1, got 0" })]
    [InlineData(new[] { "featuremaps", "x.jpg", "--max", "0", "--out", "m.png" }, new[] { "tp7 featuremaps: --max must be at least 1, got 0" })]
    [InlineData(new[] { "svm", "train", "--features", "f.npy", "--out", "m.safetensors", "--C", "0", "--max-iter", "0", "--tol", "-1" },
        new[] { "tp7 svm train: --C must be a positive number, got 0", "tp7 svm train: --tol must be a positive number, got -1", "tp7 svm train: --max-iter must be at least 1, got 0" })]
    [InlineData(new[] { "bench", "forward", "--batch", "1,0" }, new[] { "tp7 bench forward: --batch: '0' is not an integer of at least 1 (e.g. 1,8,64)" })]
    [InlineData(new[] { "bench", "forward", "--reps", "0" }, new[] { "tp7 bench forward: --reps must be at least 1, got 0" })]
    [InlineData(new[] { "bench", "train", "--size", "20" },
        new[] { "tp7 bench train: --size 20: VGG16 needs at least 32 (its five 2x2 max-poolings halve the input to 1 pixel at 32)" })]
    [InlineData(new[] { "bench", "train", "--classes", "1" }, new[] { "tp7 bench train: --classes must be at least 2, got 1" })]
    [InlineData(new[] { "finetune", "--epochs", "0" }, new[] { "tp7 finetune: --epochs must be at least 1, got 0" })]
    [InlineData(new[] { "finetune", "--size", "20" },
        new[] { "tp7 finetune: --size 20: VGG16 needs at least 32 (its five 2x2 max-poolings halve the input to 1 pixel at 32)" })]
    [InlineData(new[] { "info", "--size", "0" }, new[] { "tp7 info: --size must be at least 1, got 0" })]
    public void BadValuesFailWhileParsing(string[] args, string[] errors)
    {
        using var tmp = new ScratchDir("tp7-validate-parse");
        var r = CliRunner.Run(tmp.Path, args);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Equal([.. errors, $"(see '{errors[0][..errors[0].IndexOf(':')]} --help')"], r.StderrLines);
        Assert.Equal("", r.Stdout);
    }

    /// <summary>An --out that cannot be written fails while parsing; one that can has its folders created.</summary>
    [Fact]
    public void OutMustBeWritableAndGetsItsFolders()
    {
        using var tmp = new ScratchDir("tp7-validate-out");
        File.WriteAllText(tmp["afile"], "");
        var r = CliRunner.Run(tmp.Path, ["run", "--out", "afile/report"]);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Equal(["tp7 run: --out: afile/report: " + tmp["afile"] + " is a file, not a folder", "(see 'tp7 run --help')"], r.StderrLines);
        Assert.Equal("", r.Stdout);

        var svm = CliRunner.Run(tmp.Path, ["svm", "train", "--features", "f.npy", "--out", "afile/m.safetensors"]);
        Assert.Equal(2, svm.ExitCode);
        Assert.Equal("tp7 svm train: --out: afile/m.safetensors: " + tmp["afile"] + " is a file, not a folder", svm.StderrLines[0]);

        var features = WriteFeatures(tmp["f.npy"], Labels);
        var ok = CliRunner.RunOk(tmp.Path, ["svm", "train", "--features", features, "--out", Path.Combine("new", "deeper", "m.safetensors")]);
        Assert.True(File.Exists(tmp[Path.Combine("new", "deeper", "m.safetensors")]), ok.ToString());
    }

    /// <summary>Checks that need the model or several options: exit 1, one line, before the dataset is listed (no "data:").</summary>
    [Theory]
    [InlineData(new[] { "run", "--model", "vgg16", "--size", "20" }, "tp7 run: --size 20: VGG16 needs at least 32 (its five 2x2 max-poolings halve the input to 1 pixel at 32)")]
    [InlineData(new[] { "run", "--size", "31", "--weights", "w.safetensors" }, "tp7 run: --size 31: VGG16 needs at least 32 (its five 2x2 max-poolings halve the input to 1 pixel at 32)")]
    [InlineData(new[] { "info", "--size", "16" }, "tp7 info: --size 16: VGG16 needs at least 32 (its five 2x2 max-poolings halve the input to 1 pixel at 32)")]
    [InlineData(new[] { "run", "--weights", "missing.safetensors" }, "tp7 run: --weights missing.safetensors: no such weights file")]
    [InlineData(new[] { "bench", "forward", "--weights", "missing.safetensors" }, "tp7 bench forward: --weights missing.safetensors: no such weights file")]
    [InlineData(new[] { "bench", "train", "--weights", "missing.safetensors" }, "tp7 bench train: --weights missing.safetensors: no such weights file")]
    [InlineData(new[] { "finetune", "--init", "missing.safetensors" }, "tp7 finetune: --init missing.safetensors: no such weights file")]
    [InlineData(new[] { "run", "--train", "." }, "tp7 run: --train needs --test")]
    [InlineData(new[] { "run", "--test", "." }, "tp7 run: --test needs --train")]
    [InlineData(new[] { "run", "--train", ".", "--test", ".", "--train-per-class", "3" }, "tp7 run: --train-per-class splits --data; --train and --test are already split")]
    [InlineData(new[] { "run", "--data", "nowhere" }, "tp7 run: --data nowhere: no such folder")]
    [InlineData(new[] { "finetune", "--data", "nowhere" }, "tp7 finetune: --data nowhere: no such folder")]
    [InlineData(new[] { "run", "--model", "vgg16", "--layer", "fc9", "--weights", "w.safetensors" }, null)]
    public void ChecksOfTheModelAndOfOptionsTogetherRunBeforeTheDataset(string[] args, string? error)
    {
        using var tmp = new ScratchDir("tp7-validate-early");
        File.WriteAllText(tmp["w.safetensors"], "never read: every check above runs first");
        var r = CliRunner.Run(tmp.Path, args);
        log.WriteLine(r.ToString());
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.StderrLines);
        if (error != null) Assert.Equal(error, line);
        else Assert.StartsWith("tp7 run: --layer: 'fc9' is not a layer of the model; taps: conv1_1, ", line);
        Assert.Equal("", r.Stdout); // no "data:" line: the dataset was not listed
    }

    /// <summary>--train-per-class against the dataset: refused in one line by the listing itself, before any weight is read.</summary>
    [Fact]
    public void TrainPerClassOnASplitDatasetNamesTheOption()
    {
        using var tmp = new ScratchDir("tp7-validate-split");
        DemoData.CopySplit(tmp["data"], 2, 2, 1);
        var r = CliRunner.Run(tmp.Path, ["run", "--data", "data", "--train-per-class", "1", "--model", "vgg16"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal(["tp7 run: data: already split into train/ and test/; --train-per-class splits a single folder of class folders"], r.StderrLines);
        Assert.Equal("", r.Stdout);
    }

    /// <summary>ResNet18 at a size its graph cannot take: the shape inference's refusal in one line, before the dataset.</summary>
    [Fact]
    public void AnOnnxModelRefusesASizeThroughItsShapeInference()
    {
        using var tmp = new ScratchDir("tp7-validate-onnx-size");
        var r = CliRunner.Run(tmp.Path, ["run", "--model", "resnet18", "--size", "8"]);
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.StderrLines);
        Assert.StartsWith("tp7 run: --size 8: resnet18 cannot take a 8x8 input: ", line);
        Assert.Contains("[1, 3, 8, 8]", line);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void AnImageArgumentThatIsAFolderSaysSo()
    {
        using var tmp = new ScratchDir("tp7-validate-folder");
        Directory.CreateDirectory(tmp["photos"]);
        foreach (var args in new[] { new[] { "classify", Photo, "photos" }, ["featuremaps", "photos", "--out", "m.png"] })
        {
            var r = CliRunner.Run(tmp.Path, args);
            Assert.Equal(1, r.ExitCode);
            Assert.Equal([$"tp7 {args[0]}: photos is a folder; give image files (e.g. {Path.Combine("photos", "*.jpg")})"], r.StderrLines);
            Assert.Equal("", r.Stdout);
        }
        var missing = CliRunner.Run(tmp.Path, ["classify", "nope.jpg"]);
        Assert.Equal(["tp7 classify: nope.jpg: no such image file"], missing.StderrLines);
    }

    // ---------------------------------------------------------------- the weights lookup

    [Fact]
    public void AnExplicitTp7WeightsThatNamesNothingIsAnError()
    {
        using var tmp = new ScratchDir("tp7-validate-env");
        Directory.CreateDirectory(tmp["empty"]);
        foreach (var (value, error) in new[]
                 {
                     (tmp["nope"], $"TP7_WEIGHTS={tmp["nope"]}: no such file or folder"),
                     (tmp["empty"], $"TP7_WEIGHTS={tmp["empty"]}: the folder holds neither vgg16.safetensors nor vgg16-random-seed0.safetensors"),
                 })
            foreach (var verb in new[] { new[] { "run" }, ["classify", Photo], ["featuremaps", Photo, "--out", "m.png"], ["bench", "train"], ["finetune"] })
            {
                var r = CliRunner.Run(tmp.Path, verb, environment: new Dictionary<string, string?> { ["TP7_WEIGHTS"] = value });
                Assert.True(r.ExitCode == 1, r.ToString());
                Assert.Equal([$"tp7 {string.Join(' ', verb.TakeWhile(a => !a.Contains('/') && !a.StartsWith('-')))}: {error}"], r.StderrLines);
                Assert.Equal("", r.Stdout);
            }
    }

    /// <summary>
    /// tp7 installed outside the repository and run from another folder: weights found through TP7_WEIGHTS (a folder, a
    /// file) and through the user cache ($TP7_CACHE/weights); with none anywhere, the in-memory random init, loudly.
    /// </summary>
    [Fact]
    public void AVerbFindsWeightsFromAFolderOutsideTheRepository()
    {
        using var tmp = new ScratchDir("tp7-validate-lookup");
        string app = CliInstall.CopyTo(tmp["app"]);
        string work = Directory.CreateDirectory(tmp["work"]).FullName;
        // A complete VGG16 (torchvision's random-init distributions); a file name without "random" so the
        // random-weights warning does not fire for it.
        string weights = WeightFiles.Write(Path.Combine(Directory.CreateDirectory(tmp["mine"]).FullName, WeightsLocator.Pretrained), Vgg16Weights.RandomInit(0));
        string[] args = ["featuremaps", Photo, "--layer", "conv1_1", "--size", "32", "--max", "4", "--out", Path.Combine("maps", "m.png"), "--device", "cpu"];

        CliResult Featuremaps(string cache, Dictionary<string, string?> env)
        {
            var r = CliRunner.RunOk(work, args, cache, environment: env, programDir: app);
            log.WriteLine(r.ToString());
            Assert.Contains($"wrote {Path.Combine("maps", "m.png")}: 4 of 64 maps of conv1_1 (32x32)", r.Stdout);
            Assert.True(File.Exists(Path.Combine(work, "maps", "m.png")));
            File.Delete(Path.Combine(work, "maps", "m.png"));
            return r;
        }

        var folder = Featuremaps(tmp["cache-a"], new() { ["TP7_WEIGHTS"] = tmp["mine"] });
        Assert.Contains($"weights: {weights} (found through TP7_WEIGHTS)", folder.StderrLines);
        Assert.DoesNotContain(folder.StderrLines, l => l.StartsWith("warning:", StringComparison.Ordinal));

        var file = Featuremaps(tmp["cache-a"], new() { ["TP7_WEIGHTS"] = weights });
        Assert.Contains($"weights: {weights} (found through TP7_WEIGHTS)", file.StderrLines);

        string cache = tmp["cache-b"];
        string cached = Path.Combine(Directory.CreateDirectory(Path.Combine(cache, "weights")).FullName, WeightsLocator.Pretrained);
        File.CreateSymbolicLink(cached, weights);
        var fromCache = Featuremaps(cache, new());
        Assert.Contains($"weights: {cached} (found through the user cache)", fromCache.StderrLines);

        var none = Featuremaps(tmp["cache-c"], new());
        Assert.DoesNotContain(none.StderrLines, l => l.StartsWith("weights:", StringComparison.Ordinal));
        Assert.Contains(none.StderrLines, l => l.StartsWith("warning: ", StringComparison.Ordinal) && l.Contains("holds RANDOM weights"));
    }

    // ---------------------------------------------------------------- NaN and Inf at load

    [Fact]
    public void Vgg16WeightsHoldingNaNAreRefusedNamingTheTensor()
    {
        using var tmp = new ScratchDir("tp7-validate-nan");
        string path = tmp["nan.safetensors"];
        var specs = Vgg16Architecture.ParameterSpecs;
        long largest = specs.Max(s => s.Shape.Aggregate(1L, (a, b) => a * b));
        var zeros = new float[largest];
        var bad = new float[64 * 64 * 3 * 3];
        bad[1 * 576 + 2 * 9 + 1 * 3 + 2] = float.NaN; // features.2.weight [1, 2, 1, 2]
        SafeTensorsWriter.Write(path, specs.Select(s => (s.Key, s.Shape,
            s.Key == "features.2.weight" ? new ReadOnlyMemory<float>(bad) : new ReadOnlyMemory<float>(zeros, 0, (int)s.Shape.Aggregate(1L, (a, b) => a * b)))));
        string want = $"{path}: tensor 'features.2.weight': holds NaN at [1, 2, 1, 2] (element 599); weights must be finite";
        foreach (var args in new[] { new[] { "info", "--weights", path }, ["classify", Photo, "--weights", path, "--device", "cpu"] })
        {
            var r = CliRunner.Run(tmp.Path, args);
            Assert.Equal(1, r.ExitCode);
            Assert.Equal([$"tp7 {args[0]}: {want}"], r.StderrLines);
            Assert.Equal("", r.Stdout);
        }
    }

    [Fact]
    public void OnnxInitializersAndSvmModelsHoldingNaNOrInfAreRefused()
    {
        using var tmp = new ScratchDir("tp7-validate-nan-onnx");
        var nanBias = OnnxModels.ConvRelu();
        nanBias.Graph.Initializer.Single(t => t.Name == "B").FloatData[1] = float.NaN;
        File.WriteAllBytes(tmp["nan.onnx"], nanBias.ToByteArray());
        var r = CliRunner.Run(tmp.Path, ["info", "--model", "nan.onnx"]);
        Assert.Equal(["tp7 info: nan.onnx: tensor 'B': holds NaN at element 1; weights must be finite"], r.StderrLines);

        var infWeight = OnnxModels.ConvRelu();
        var w = (float[])OnnxModels.W.Clone();
        w[25] = float.NegativeInfinity;
        infWeight.Graph.Initializer.Single(t => t.Name == "W").RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(w.AsSpan()));
        File.WriteAllBytes(tmp["inf.onnx"], infWeight.ToByteArray());
        var inf = CliRunner.Run(tmp.Path, ["info", "--model", "inf.onnx"]);
        Assert.Equal(["tp7 info: inf.onnx: tensor 'W': holds -Inf at [1, 0, 2, 1] (element 25); weights must be finite"], inf.StderrLines);

        string model = tmp["svm.safetensors"];
        var coef = new double[3 * 4];
        coef[7] = double.PositiveInfinity;
        SvmModelFile.Write(model, new LinearSvmModel([0, 1, 2], 4, coef, new double[3], new SvmOptions()), ["a", "b", "c"], "relu7", true, "sha");
        var svm = CliRunner.Run(tmp.Path, ["svm", "eval", "--model", model, "--features", "absent.npy"]);
        Assert.Equal([$"tp7 svm eval: {model}: tensor 'coef': holds +Inf at element 7; weights must be finite"], svm.StderrLines);
    }

    /// <summary>The scan itself: every position of arrays whose length is not a multiple of the SIMD width.</summary>
    [Fact]
    public void FirstNonFiniteFindsTheFirstBadElementAnywhere()
    {
        foreach (int n in new[] { 0, 1, 7, 8, 9, 31, 33, 100 })
        {
            var x = Enumerable.Range(0, n).Select(i => (i % 2 == 0 ? 1 : -1) * float.MaxValue / (i + 1)).ToArray();
            Assert.Equal(-1, FiniteCheck.FirstNonFinite(x));
            for (int at = 0; at < n; at++)
                foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00001)) })
                {
                    var y = (float[])x.Clone();
                    y[at] = bad;
                    if (at + 3 < n) y[at + 3] = float.NaN; // a later one does not hide the first
                    Assert.Equal(at, FiniteCheck.FirstNonFinite(y));
                }
        }
    }

    // ---------------------------------------------------------------- svm eval, svm predict

    /// <summary>3 classes x 4 rows, one-hot-ish features: separable, so a model trained on them predicts each row's class.</summary>
    static readonly int[] Labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2];
    static readonly string[] Classes = ["cat", "dog", "owl"];

    /// <param name="rowsOf">The classes the rows' features are drawn for (default: <paramref name="labels"/>), so a test can mislabel rows.</param>
    static string WriteFeatures(string path, int[] labels, int[]? rowsOf = null, string[]? classes = null)
    {
        const int d = 5;
        rowsOf ??= labels;
        classes ??= Classes;
        var x = new float[rowsOf.Length * d];
        for (int i = 0; i < rowsOf.Length; i++)
        {
            x[i * d + rowsOf[i]] = 1f;
            x[i * d + 3] = 0.1f * (i % 4);
            x[i * d + 4] = 0.05f;
        }
        var paths = Enumerable.Range(0, labels.Length).Select(i => $"img/{classes[rowsOf[i]]}_{i}.png").ToArray();
        FeatureFile.Write(path, new FeatureSet(x, labels.Length, d, paths, labels, classes, "relu7", false, "sha", [],
            new ExtractionStats(labels.Length, 0, labels.Length, 0, 0, 0, 0, 0)));
        return path;
    }

    [Fact]
    public void SvmEvalPrintsTheConfusionMatrixAndJson()
    {
        using var tmp = new ScratchDir("tp7-validate-eval");
        string train = WriteFeatures(tmp["train.npy"], Labels);
        // The same rows, with row 5 (a dog) labelled owl: the model still says dog there.
        var relabelled = (int[])Labels.Clone();
        relabelled[5] = 2;
        string test = WriteFeatures(tmp["test.npy"], relabelled, rowsOf: Labels);
        CliRunner.RunOk(tmp.Path, ["svm", "train", "--features", train, "--out", "m.safetensors"]);

        var text = CliRunner.RunOk(tmp.Path, ["svm", "eval", "--model", "m.safetensors", "--features", test]);
        log.WriteLine(text.Stdout);
        var lines = text.Stdout.Split('\n').Select(l => l.TrimEnd()).ToList();
        int at = lines.IndexOf("confusion matrix (rows: true class, columns: predicted class)");
        Assert.True(at > 0, text.Stdout);
        Assert.Equal(["       0  1  2", "0 cat  4  0  0", "1 dog  0  3  0", "2 owl  0  1  4"], lines.Skip(at + 1).Take(4));
        Assert.Matches(@"(?m)^\s*accuracy\s+0\.9167\s+12$", text.Stdout);
        Assert.Matches(@"(?m)^\s*owl\s+1\.0000\s+0\.8000\s+0\.8889\s+5$", text.Stdout);

        var json = CliRunner.RunOk(tmp.Path, ["svm", "eval", "--model", "m.safetensors", "--features", test, "--json"]);
        using var doc = JsonDocument.Parse(json.Stdout);
        var root = doc.RootElement;
        Assert.Equal(11.0 / 12, root.GetProperty("accuracy").GetDouble(), 12);
        Assert.Equal(12, root.GetProperty("num_samples").GetInt32());
        Assert.Equal(Classes, root.GetProperty("classes").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal([[4, 0, 0], [0, 3, 0], [0, 1, 4]],
            root.GetProperty("confusion_matrix").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt32()).ToArray()).ToArray());
        var dog = root.GetProperty("per_class")[1];
        Assert.Equal("dog", dog.GetProperty("name").GetString());
        Assert.Equal(3.0 / 4, dog.GetProperty("precision").GetDouble(), 12);
        Assert.Equal(1.0, dog.GetProperty("recall").GetDouble(), 12);
        Assert.Equal(2 * 0.75 / 1.75, dog.GetProperty("f1").GetDouble(), 12);
        Assert.Equal(3, dog.GetProperty("support").GetInt32());
        var macro = root.GetProperty("macro_avg");
        Assert.Equal((1 + 0.75 + 1) / 3, macro.GetProperty("precision").GetDouble(), 12);
        Assert.Equal((1 + 1 + 0.8) / 3, macro.GetProperty("recall").GetDouble(), 12);
    }

    [Fact]
    public void SvmPredictWritesTheTrueLabelAndTheScores()
    {
        using var tmp = new ScratchDir("tp7-validate-predict");
        string features = WriteFeatures(tmp["f.npy"], Labels);
        CliRunner.RunOk(tmp.Path, ["svm", "train", "--features", features, "--out", "m.safetensors"]);
        var plain = CliRunner.RunOk(tmp.Path, ["svm", "predict", "--model", "m.safetensors", "--features", features]);
        var rows = plain.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("path,true,predicted", rows[0]);
        Assert.Equal(Labels.Select((l, i) => $"img/{Classes[l]}_{i}.png,{Classes[l]},{Classes[l]}"), rows.Skip(1));

        var scored = CliRunner.RunOk(tmp.Path, ["svm", "predict", "--model", "m.safetensors", "--features", features, "--scores"]);
        var lines = scored.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("path,true,predicted,score:cat,score:dog,score:owl", lines[0]);
        var stored = SvmModelFile.Read(tmp["m.safetensors"]);
        var f = FeatureFile.Read(features);
        var want = stored.Model.DecisionFunctionBatch(f.X, f.N);
        for (int i = 0; i < f.N; i++)
        {
            var cells = lines[i + 1].Split(',');
            Assert.Equal(6, cells.Length);
            var values = cells[3..].Select(c => double.Parse(c, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(want.AsSpan(i * 3, 3).ToArray(), values); // "R" round-trips every double
            Assert.Equal(cells[2], Classes[Array.IndexOf(values, values.Max())]);
        }

        // Two classes: one classifier scoring dog against cat; cat's column is its negation.
        string two = WriteFeatures(tmp["two.npy"], [0, 0, 0, 0, 1, 1, 1, 1], classes: ["cat", "dog"]);
        CliRunner.RunOk(tmp.Path, ["svm", "train", "--features", two, "--out", "two.safetensors"]);
        var binary = CliRunner.RunOk(tmp.Path, ["svm", "predict", "--model", "two.safetensors", "--features", two, "--scores"]).Stdout
            .Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("path,true,predicted,score:cat,score:dog", binary[0]);
        var g = FeatureFile.Read(two);
        var dogScore = SvmModelFile.Read(tmp["two.safetensors"]).Model.DecisionFunctionBatch(g.X, g.N);
        for (int i = 0; i < g.N; i++)
        {
            var cells = binary[i + 1].Split(',');
            double cat = double.Parse(cells[3], System.Globalization.CultureInfo.InvariantCulture), dog = double.Parse(cells[4], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(dogScore[i], dog);
            Assert.Equal(-dog, cat);
            Assert.Equal(dog > 0 ? "dog" : "cat", cells[2]);
            Assert.Equal(cells[1], cells[2]);
        }
    }

    // ---------------------------------------------------------------- devices, selftest

    [Fact]
    public void DevicesJsonListsTheHostBackendAndTheCpuAccelerator()
    {
        using var tmp = new ScratchDir("tp7-validate-devices");
        var r = CliRunner.RunOk(tmp.Path, ["devices", "--json"]);
        using var doc = JsonDocument.Parse(r.Stdout);
        var devices = doc.RootElement.EnumerateArray().ToList();
        var host = devices[0];
        Assert.Equal("cpu", host.GetProperty("device").GetString());
        Assert.True(host.GetProperty("usable").GetBoolean());
        Assert.Equal(JsonValueKind.Null, host.GetProperty("refused_because").ValueKind);
        Assert.Contains($"{Environment.ProcessorCount} cores", host.GetProperty("capability").GetString());
        Assert.True(host.GetProperty("memory_bytes").GetInt64() > 0);
        Assert.Contains(devices, d => d.GetProperty("device").GetString() == "ilgpu-cpu");
        Assert.All(devices, d => Assert.Equal(d.GetProperty("usable").GetBoolean(), d.GetProperty("refused_because").ValueKind == JsonValueKind.Null));
    }

    /// <summary>Without a GPU, selftest runs ILGPU's CPU accelerator and says why; with one it runs there (checked by the GPU machine).</summary>
    [Fact]
    public void SelfTestWithoutAGpuRunsTheCpuAcceleratorAndSaysSo()
    {
        using var tmp = new ScratchDir("tp7-validate-selftest");
        using (var devices = JsonDocument.Parse(CliRunner.RunOk(tmp.Path, ["devices", "--json"]).Stdout))
            if (devices.RootElement.EnumerateArray().Any(d => d.GetProperty("device").GetString() is "cuda" or "opencl" && d.GetProperty("usable").GetBoolean()))
            {
                log.WriteLine("this machine has a GPU: `tp7 selftest` runs there, which CliTests and the GPU check cover");
                return;
            }
        var r = CliRunner.RunOk(tmp.Path, ["selftest"]);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^selftest: no GPU \(no CUDA device; .*\); running the kernels on ILGPU's CPU accelerator instead", lines[0]);
        Assert.Matches(@"^selftest on .*: [1-9][0-9]+ passed, 0 failed, [1-9][0-9]* skipped \(the SKIP lines say why\)$", lines[^1].TrimEnd());
        Assert.DoesNotContain(lines, l => l.StartsWith("FAIL", StringComparison.Ordinal));
        // The tensor-core versions cannot run on the CPU accelerator: listed as skipped, with the reason.
        Assert.Contains(lines, l => l.StartsWith("SKIP gemm V4MmaTf32 [every shape]", StringComparison.Ordinal) && l.Contains("compute capability 8.0"));
        Assert.Contains(lines, l => l.StartsWith("SKIP conv2d V4MmaBf16", StringComparison.Ordinal));
    }
}
