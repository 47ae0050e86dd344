using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Features;
using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Engine.Studies;
using Tp7.Engine.Svm;

namespace Tp7.Bench;

/// <summary>
/// The sweep's grid (layers × C × folds, no PCA by default), ours (<see cref="Sweep.Run"/>) vs scikit-learn's
/// (tools/reference_sweep.py: LinearSVC over the same folds, a plain serial loop, optionally GridSearchCV(n_jobs))
/// on the same cached features, in one run. Validates first (our CV means against scikit-learn's, best C per
/// layer), then times ours (median of --reps after the validation run, which is the warm-up) and takes
/// scikit-learn's own grid time from its JSON (its process start and .npy loading excluded).
///
/// Features: VGG16 at the six layers by our extraction (one forward pass per batch for every tap) of
/// --train-per-class + --test-per-class images per class of Fashion-MNIST (tools/make_demo_data.py reads the IDX
/// files, --fmnist DIR; default /usr/share/datasets/fashion-mnist), or of a tp7 dataset folder (--images DIR:
/// train/ and test/ class folders), or synthetic relu-like rows of the layers' shapes (--synthetic, SvmBench's
/// generator: the solver's cost, not real features). Weights: weights/vgg16-random-seed0.safetensors when found,
/// else Vgg16Weights.RandomInit(0). Saved once as .npy under --cache (default $TP7_CACHE/bench-sweep/...), so
/// reruns skip the extraction.
/// Args: [--layers pool5,fc6,relu6,fc7,relu7,fc8] [--Cs logspace(-3,2,12)] [--folds 5] [--pca 0] [--reps 1]
///       [--sklearn-jobs 1[,-1]] [--no-sklearn] [--cold] [--primal] [--threads 0] [--train-per-class 150] [--test-per-class 30]
///       [--fmnist DIR | --images DIR | --synthetic] [--cache DIR] [--batch 16]
/// </summary>
public sealed class SweepBench : IBenchmark
{
    static readonly string[] AllLayers = ["pool5", "fc6", "relu6", "fc7", "relu7", "fc8"];

    public string Name => "sweep";
    public string Description => "tp7 sweep's grid (6 VGG16 layers x 12 C x 5 folds on 1,500 images' features) vs scikit-learn's LinearSVC loop";

    public int Run(string[] args)
    {
        var layers = (Arg(args, "--layers") ?? string.Join(',', AllLayers)).Split(',', StringSplitOptions.RemoveEmptyEntries);
        double[] Cs = Arg(args, "--Cs") is { } cs
            ? [.. cs.Split(',').Select(c => double.Parse(c, CultureInfo.InvariantCulture))]
            : [.. Enumerable.Range(0, 12).Select(i => Math.Pow(10, -3 + 5.0 * i / 11))];   // numpy.logspace(-3, 2, 12)
        int folds = IntArg(args, "--folds", 5), reps = IntArg(args, "--reps", 1), threads = IntArg(args, "--threads", 0);
        int[] pca = [.. (Arg(args, "--pca") ?? "0").Split(',').Select(int.Parse)];
        int trainPer = IntArg(args, "--train-per-class", 150), testPer = IntArg(args, "--test-per-class", 30);
        string[] jobs = args.Contains("--no-sklearn") ? [] : (Arg(args, "--sklearn-jobs") ?? "1").Split(',');
        foreach (var l in layers)
            if (!AllLayers.Contains(l)) { Console.Error.WriteLine($"--layers: unknown layer {l}; known {string.Join(", ", AllLayers)}"); return 2; }

        Console.WriteLine($"sweep: layers {string.Join(',', layers)}; {Cs.Length} C from {Cs[0]:g3} to {Cs[^1]:g3}; {folds} folds; pca {string.Join(',', pca)}; " +
                          "squared hinge, tol 1e-4, max_iter 1000, bias 1 (LinearSVC's defaults)");
        Console.WriteLine($"host: {SvmBench.CpuName()}, {Environment.ProcessorCount} logical cores; load average {SvmBench.LoadAverage()}");

        string dir = FeatureFolder(args, trainPer, testPer);
        var (train, test) = LoadFeatures(dir, layers);
        var first = train[layers[0]];
        Console.WriteLine($"features: {dir}: {first.N} train / {test[layers[0]].N} test rows, {first.Classes.Count} classes; " +
                          string.Join(", ", layers.Select(l => $"{l} {train[l].D}")));
        var settings = new SweepSettings(layers, Cs, folds, pca, MaxThreads: threads);

        // ---- validate: our grid once (also the warm-up), scikit-learn's per requested mode
        var ours = Sweep.Run(train, test, settings);
        Console.WriteLine($"ours: grid {ours.GridSeconds:F2} s on {ours.Threads} threads (validation run); {ours.Warnings.Count} rows with iteration-limit hits");
        var sk = new List<(string Jobs, JsonDocument Json, double Wall, double Cpu)>();
        bool ok = true;
        foreach (var j in jobs)
        {
            string outJson = Path.Combine(dir, $"sklearn-{j}-{Guid.NewGuid():N}.json");
            long t0 = Stopwatch.GetTimestamp();
            double cpu0 = SvmBench.ChildrenCpuSeconds();
            LibLinearInterop.RunTool("/usr/bin/python3", [Path.Combine(RepoRoot(), "tools", "reference_sweep.py"), "--features", dir,
                "--layers", string.Join(',', layers), "--Cs", string.Join(',', Cs.Select(c => c.ToString("R", CultureInfo.InvariantCulture))),
                "--folds", folds.ToString(CultureInfo.InvariantCulture), "--pca", string.Join(',', pca), "--n-jobs", j, "--out", outJson],
                TimeSpan.FromHours(6));
            double wall = Stopwatch.GetElapsedTime(t0).TotalSeconds, cpu = SvmBench.ChildrenCpuSeconds() - cpu0;
            var doc = JsonDocument.Parse(File.ReadAllText(outJson));
            File.Delete(outJson);
            sk.Add((j, doc, wall, cpu));
            ok &= Validate(ours, doc.RootElement, j);
        }

        // ---- time ours
        var times = new double[reps];
        var cpus = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            double c0 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
            times[r] = Sweep.Run(train, test, settings).GridSeconds;
            cpus[r] = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - c0;
        }
        Array.Sort(times);
        Array.Sort(cpus);
        double oursMedian = times[reps / 2], oursCpu = cpus[reps / 2];
        Console.WriteLine($"time: ours {oursMedian:F2} s wall, {oursCpu:F2} s CPU (medians of {reps} after the validation run; {ours.Threads} threads; " +
                          "Gram-matrix dual CD, warm start along C)");
        if (args.Contains("--cold"))
        {
            var cold = Sweep.RunCold(train, test, settings);
            Console.WriteLine($"time: ours, cold start at every C {cold.GridSeconds:F2} s wall");
        }
        if (args.Contains("--primal"))
        {
            var plain = Sweep.RunPrimal(train, test, settings);
            Console.WriteLine($"time: ours, plain loop of LinearSvm.TrainOneVsRest (no Gram matrices, cold) {plain.GridSeconds:F2} s wall");
        }
        foreach (var (j, doc, wall, cpu) in sk)
        {
            double grid = doc.RootElement.GetProperty("grid_seconds").GetDouble();
            string mode = j == "1" ? "plain serial loop, 1 thread (liblinear)" : $"GridSearchCV(n_jobs={j}) + joblib refits, {(j == "-1" ? Environment.ProcessorCount : int.Parse(j))} processes";
            Console.WriteLine($"time: scikit-learn {grid:F2} s grid wall ({mode}); process {wall:F2} s wall, {cpu:F2} s CPU with start-up and .npy loading");
            Console.WriteLine($"speed-up vs scikit-learn {mode}: {grid / oursMedian:F1}x wall (target >= 10x vs the serial loop), {cpu / oursCpu:F1}x CPU time");
        }
        Console.WriteLine($"load average now {SvmBench.LoadAverage()}: on a shared machine wall times are noisy");
        if (!ok) Console.WriteLine("validate: FAILED");
        return ok ? 0 : 1;
    }

    /// <summary>Our CV means within 0.5 point of scikit-learn's on every row; best C per (layer, pca) listed.</summary>
    static bool Validate(SweepResult ours, JsonElement sk, string jobs)
    {
        var theirs = sk.GetProperty("rows").EnumerateArray().ToList();
        if (theirs.Count != ours.Rows.Count) { Console.WriteLine($"validate: scikit-learn gave {theirs.Count} rows, we {ours.Rows.Count}"); return false; }
        double worst = 0;
        int flips = 0;
        foreach (var (o, t) in ours.Rows.Zip(theirs))
        {
            if (t.GetProperty("layer").GetString() != o.Layer || t.GetProperty("pca").GetInt32() != o.Pca || Math.Abs(t.GetProperty("C").GetDouble() - o.C) > 1e-12 * o.C)
            { Console.WriteLine($"validate: row order differs at {o.Layer} pca {o.Pca} C={o.C}"); return false; }
            worst = Math.Max(worst, Math.Abs(o.CvMean - t.GetProperty("cv_mean").GetDouble()));
            if (o.Selected != t.GetProperty("selected").GetBoolean() && o.Selected)
            {
                var best = theirs.First(r => r.GetProperty("layer").GetString() == o.Layer && r.GetProperty("pca").GetInt32() == o.Pca && r.GetProperty("selected").GetBoolean());
                Console.WriteLine($"validate: {o.Layer} pca {o.Pca}: best C ours {o.C:g3} (cv {o.CvMean:F4}), scikit-learn's {best.GetProperty("C").GetDouble():g3} " +
                                  $"(cv {best.GetProperty("cv_mean").GetDouble():F4}; ours there {ours.Rows.First(r => r.Layer == o.Layer && r.Pca == o.Pca && Math.Abs(r.C - best.GetProperty("C").GetDouble()) <= 1e-12 * r.C).CvMean:F4})");
                flips++;
            }
        }
        Console.WriteLine($"validate (scikit-learn n_jobs={jobs}): {ours.Rows.Count} rows, max |CV mean ours - scikit-learn| {worst * 100:F2} points (limit 0.5); " +
                          $"best C differs in {flips} of {ours.Rows.Count(r => r.Selected)} (layer, pca)");
        return worst <= 0.005;
    }

    // ---- features

    static string FeatureFolder(string[] args, int trainPer, int testPer)
    {
        string cacheRoot = Arg(args, "--cache") ?? Path.Combine(
            Environment.GetEnvironmentVariable("TP7_CACHE") is { Length: > 0 } env ? env : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "tp7"),
            "bench-sweep");
        string? images = Arg(args, "--images");
        bool synthetic = args.Contains("--synthetic");
        string fmnist = Arg(args, "--fmnist") ?? "/usr/share/datasets/fashion-mnist";
        string weights = WeightsLocator.SearchFolders().Select(f => Path.Combine(f, WeightsLocator.RandomInit)).FirstOrDefault(File.Exists) ?? "";
        string tag = synthetic ? $"synthetic-{trainPer}-{testPer}"
            : images != null ? $"images-{Path.GetFileName(Path.GetFullPath(images).TrimEnd('/'))}"
            : $"fmnist-{trainPer}-{testPer}";
        if (!synthetic) tag += weights == "" ? "-randominit0" : "-" + Path.GetFileNameWithoutExtension(weights);
        string dir = Path.Combine(cacheRoot, tag);
        if (File.Exists(Path.Combine(dir, "done"))) return dir;
        Directory.CreateDirectory(dir);
        var clock = Stopwatch.StartNew();
        if (synthetic) WriteSynthetic(dir, trainPer, testPer);
        else
        {
            if (images == null)
            {
                if (!Directory.Exists(fmnist))
                    throw new DirectoryNotFoundException($"--fmnist {fmnist}: no Fashion-MNIST IDX files there (apt-get install dataset-fashion-mnist); " +
                                                         "or give --images DIR (train/ and test/ class folders) or --synthetic");
                images = Path.Combine(dir, "images");
                LibLinearInterop.RunTool("/usr/bin/python3", [Path.Combine(RepoRoot(), "tools", "make_demo_data.py"), "--source", fmnist, "--out", images,
                    "--train-per-class", trainPer.ToString(CultureInfo.InvariantCulture), "--test-per-class", testPer.ToString(CultureInfo.InvariantCulture), "--force"],
                    TimeSpan.FromMinutes(10));
            }
            Extract(dir, DatasetLoader.Open(Path.Combine(images, "train"), Path.Combine(images, "test")), weights, IntArg(args, "--batch", 16));
        }
        File.WriteAllText(Path.Combine(dir, "done"), $"made in {clock.Elapsed.TotalSeconds:F0} s\n");
        Console.WriteLine($"features: written to {dir} in {clock.Elapsed.TotalSeconds:F0} s");
        return dir;
    }

    /// <summary>Our extraction of every layer in one forward pass per batch, L2-normalised rows, as .npy.</summary>
    static void Extract(string dir, Dataset data, string weights, int batch)
    {
        using var host = new HostDevice();
        using var model = new ImageModel(host, weights == "" ? Vgg16Weights.RandomInit(0) : WeightsLocator.Load(weights));
        Console.WriteLine($"features: extracting {data.Train.Count} + {data.Test.Count} images with {(weights == "" ? "Vgg16Weights.RandomInit(0)" : weights)} on the host");
        foreach (var (part, items) in new[] { ("train", data.Train), ("test", data.Test) })
        {
            var rows = AllLayers.ToDictionary(l => l, l => new List<float[]>());
            var labels = new List<int>();
            var loader = new BatchLoader(items, model.Preprocessing, batch);
            foreach (var b in loader.ReadBatches())
                using (b)
                {
                    if (b.Count == 0) continue;
                    var p = model.Preprocessing;
                    var f = model.Forward(b.Data.AsSpan(0, b.Count * p.TensorLength), b.Count, p.Size, p.Size, AllLayers);
                    foreach (var l in AllLayers)
                    {
                        int d = f[l].Length / b.Count;
                        for (int j = 0; j < b.Count; j++)
                        {
                            var row = f[l].AsSpan(j * d, d).ToArray();
                            FeatureExtractor.Normalize(row);
                            rows[l].Add(row);
                        }
                    }
                    labels.AddRange(b.Items.Select(i => i.Label));
                    Console.Write($"\r  {part}: {labels.Count}/{items.Count}");
                }
            Console.WriteLine();
            if (loader.Skipped.Count > 0) throw new InvalidDataException($"{loader.Skipped.Count} images could not be read, e.g. {loader.Skipped[0].Path}");
            foreach (var l in AllLayers) WriteRows(Path.Combine(dir, $"{l}_{part}.npy"), rows[l]);
            Npy.Write(Path.Combine(dir, $"{part}_labels.npy"), labels.ToArray(), labels.Count);
        }
    }

    /// <summary>Relu-like rows (SvmBench's generator) of each layer's width; 10 classes.</summary>
    static void WriteSynthetic(string dir, int trainPer, int testPer)
    {
        const int classes = 10;
        int n = classes * (trainPer + testPer), nTrain = classes * trainPer;
        int[] dims = [25088, 4096, 4096, 4096, 4096, 1000];
        int[]? y = null;
        for (int li = 0; li < AllLayers.Length; li++)
        {
            var (X, labels) = SvmBench.ReluFeatures(n, dims[li], classes, seed: li);
            y ??= labels;
            var rows = Enumerable.Range(0, n).Select(i => { var r = X.AsSpan(i * dims[li], dims[li]).ToArray(); FeatureExtractor.Normalize(r); return r; }).ToList();
            WriteRows(Path.Combine(dir, $"{AllLayers[li]}_train.npy"), rows[..nTrain]);
            WriteRows(Path.Combine(dir, $"{AllLayers[li]}_test.npy"), rows[nTrain..]);
        }
        Npy.Write(Path.Combine(dir, "train_labels.npy"), y![..nTrain], nTrain);
        Npy.Write(Path.Combine(dir, "test_labels.npy"), y[nTrain..], n - nTrain);
    }

    static void WriteRows(string path, List<float[]> rows)
    {
        int d = rows[0].Length;
        var X = new float[(long)rows.Count * d];
        for (int i = 0; i < rows.Count; i++) rows[i].CopyTo(X, (long)i * d);
        Npy.Write(path, X, rows.Count, d);
    }

    static (Dictionary<string, FeatureSet> Train, Dictionary<string, FeatureSet> Test) LoadFeatures(string dir, string[] layers)
    {
        var train = new Dictionary<string, FeatureSet>();
        var test = new Dictionary<string, FeatureSet>();
        int[] yTrain = Npy.ReadInt32(Path.Combine(dir, "train_labels.npy")).Data, yTest = Npy.ReadInt32(Path.Combine(dir, "test_labels.npy")).Data;
        string[] classes = [.. yTrain.Distinct().Order().Select(c => c.ToString(CultureInfo.InvariantCulture))];
        foreach (var l in layers)
            foreach (var (part, y, to) in new[] { ("train", yTrain, train), ("test", yTest, test) })
            {
                var (X, shape) = Npy.ReadFloat32(Path.Combine(dir, $"{l}_{part}.npy"));
                to[l] = new FeatureSet(X, (int)shape[0], (int)shape[1], [.. y.Select((_, i) => $"{part}/{i}")], y, classes, l, true, "", [],
                    new ExtractionStats((int)shape[0], (int)shape[0], 0, 0, 0, 0, 0, 0));
            }
        return (train, test);
    }

    static string RepoRoot() => ForwardComparisonBench.RepositoryRoot();

    static string? Arg(string[] a, string name) => BenchArgs.Arg(a, name);
    static int IntArg(string[] a, string name, int def) => BenchArgs.Int(a, name, def);
}
