using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Tp7.Engine.Features;
using Tp7.Engine.Model;
using Tp7.Engine.Reporting;
using Tp7.Engine.Studies;
using Tp7.Engine.Svm;

namespace Tp7.Cli.Commands;

/// <summary>
/// `tp7 sweep`: every requested layer from one extraction pass, then for each (layer, PCA size, C) stratified k-fold
/// CV on the training images, the best C per (layer, PCA size) refitted and scored on the test images; results.csv,
/// results.json and an HTML report with figures and a summary.
/// </summary>
static class SweepCommand
{
    /// <summary>VGG16's classic transfer-learning taps.</summary>
    public static readonly string[] Vgg16Layers = ["pool5", "fc6", "relu6", "fc7", "relu7", "fc8"];

    public static Command Create()
    {
        var layers = new Option<string?>("--layers")
        {
            Description = "Comma list of layers; default VGG16: pool5,fc6,relu6,fc7,relu7,fc8; other models: the default feature layer and every tap that is a vector per image",
        };
        var c = new Option<double[]>("--C")
        {
            Description = "SVM C values: LO:HI:N (N values log-spaced from LO to HI inclusive, numpy.logspace) or a comma list",
            DefaultValueFactory = _ => Logspace("1e-3:1e2:12"),
        }.PositiveListOrLogRange();
        var folds = new Option<int>("--folds") { Description = "Cross-validation folds (the i-th training image of each class goes to fold i mod k)", DefaultValueFactory = _ => 5 }.AtLeast(2);
        var pca = new Option<int[]>("--pca")
        {
            Description = "PCA sizes: comma list of 'none' and positive integers, none first",
            DefaultValueFactory = _ => [0, 32, 64, 128, 256, 512, 1024],
        }.SizesOrNone();
        var loss = new Option<string>("--loss") { Description = "squared_hinge or hinge", DefaultValueFactory = _ => "squared_hinge" };
        loss.AcceptOnlyFromAmong("squared_hinge", "hinge");
        var threads = new Option<int>("--threads") { Description = "SVM trainings in parallel (0: all cores)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var batch = new Option<int>("--batch") { Description = "Images per forward pass", DefaultValueFactory = _ => 32 }.AtLeast(1);
        var output = new Option<string?>("--out") { Description = "Report folder", DefaultValueFactory = _ => "out/sweep" }.Writable();
        var noCache = new Option<bool>("--no-cache") { Description = "Neither read nor write the feature cache" };
        var command = new Command("sweep", "Layers x PCA sizes x C by stratified k-fold cross-validation, the best C per (layer, PCA size) scored on the test set; report with figures")
            { layers, c, folds, pca, loss, threads, batch, output, noCache };
        var model = new ModelOptions(command);
        var dataset = new DatasetOptions(command, "Seed of the split (--train-per-class) and of the SVM's coordinate order");
        var device = new DeviceOptions(command);
        command.SetHandler(parse =>
        {
            model.Check(parse);
            device.CheckPrecision(parse);
            var ds = dataset.Open(parse);
            if (ds.Train.Count == 0) throw new ArgumentException($"{ds.Root}: no training images");
            if (ds.Test.Count == 0) throw new ArgumentException($"{ds.Root}: no test images (use train/ and test/ folders or --train-per-class)");
            string choice = parse.GetValue(model.Model) ?? "vgg16";
            string? layerList = parse.GetValue(layers);
            var requested = layerList?.Split(',', StringSplitOptions.TrimEntries);
            if (requested != null && requested.Any(l => l.Length == 0)) throw new ArgumentException($"--layers: '{layerList}' has an empty name");
            SweepSettings settings = null!;
            // Every check that needs the graph but no weights: layer names, their dimensions against --pca, folds against the listing.
            using var session = ModelSession.Open(parse, device, model, check: (graph, pre) =>
            {
                var names = (requested ?? (choice == "vgg16" ? Vgg16Layers : DefaultLayers(graph, pre.Size)))
                    .Select(l => ImageModel.CanonicalLayer(graph, l, "--layers")).ToList();
                var dims = names.Distinct().ToDictionary(l => l, l => (int)ImageModel.LayerShape(graph, l, 1, pre.Size).PerSample);
                var labels = ds.Train.Select(i => i.Label).ToList();
                var sizes = parse.GetValue(pca)!;
                if (parse.GetResult(pca) is not { Implicit: false })
                    sizes = DefaultSizesThatFit(sizes, dims, labels, parse.GetValue(folds));
                settings = new SweepSettings(names, parse.GetValue(c)!, parse.GetValue(folds), sizes,
                    parse.GetValue(loss) == "hinge" ? SvmLoss.Hinge : SvmLoss.SquaredHinge, parse.GetValue(dataset.Seed), parse.GetValue(threads));
                Sweep.Check(settings, dims, labels);
            });
            var outDir = OptionChecks.CreateFolder(parse.GetValue(output)!);

            var progress = new ProgressLine();
            var extractor = new FeatureExtractor(session.Model, session.WeightsSha256, settings.Layers, batchSize: parse.GetValue(batch),
                cache: parse.GetValue(noCache) ? null : FeatureCache.Default());
            var train = extractor.ExtractLayers(ds.Train, ds.Classes, p => progress.Report("train features", p));
            var test = extractor.ExtractLayers(ds.Test, ds.Classes, p => progress.Report("test features", p));
            progress.Finish();
            var first = settings.Layers[0];
            var gate = new object();
            var result = Sweep.Run(train, test, settings, p =>
            {
                lock (gate)
                    progress.Report("sweep", new ExtractProgress(p.Done, p.Total, p.Seconds),
                        $"{(p.Done > 0 && p.Done < p.Total ? $"ETA {TimeSpan.FromSeconds(p.Seconds / p.Done * (p.Total - p.Done)):m\\:ss}  " : "")}{p.Current}");
            });
            progress.Finish();

            var run = new SweepRun(result, ds, train[first], test[first], session.Model.Name, session.WeightsDescription, session.WeightsSha256,
                session.RandomWeights, session.Device.Name, session.Preprocessing.Describe(), parse.GetValue(batch));
            var summary = SweepReportWriter.Write(outDir, run);
            Print(run, summary, outDir);
            if (session.RandomWeights)
                Console.WriteLine($"NOTE: these features come from RANDOM weights ({session.WeightsDescription}); the accuracies mean little. {WeightsLocator.HowToGet}");
            return 0;
        });
        return command;
    }

    /// <summary>An ONNX model's default layers: its default feature layer, then every tap (alias) that is one vector per image.</summary>
    static IEnumerable<string> DefaultLayers(Tp7.Engine.Graph.Graph graph, int size)
    {
        var layers = new List<string> { ImageModel.TapName(graph, ImageModel.DefaultFeatureLayer(graph)) };
        var values = new HashSet<string> { graph.Resolve(layers[0]) };
        foreach (var (alias, value) in graph.Aliases)
            if (values.Add(value) && ImageModel.LayerShape(graph, alias, 1, size).Rank == 2) layers.Add(alias);
        return layers;
    }

    /// <summary>
    /// The default PCA sizes a sweep can fit: PCA keeps at most as many components as the smallest layer has features
    /// and a fold's training part has images (VGG16's fc8 has 1000, the demo set's 5-fold parts 160); the rest are
    /// dropped with a note. Sizes given with --pca are never dropped: Sweep.Check refuses those that do not fit.
    /// </summary>
    static int[] DefaultSizesThatFit(int[] sizes, Dictionary<string, int> dims, List<int> labels, int folds)
    {
        if (folds < 2 || labels.Count == 0) return sizes;
        int rows = labels.Count - Sweep.FoldOf(labels, folds).GroupBy(f => f).Max(g => g.Count());
        var (layer, features) = dims.MinBy(kv => kv.Value);
        int limit = Math.Min(rows, features);
        var dropped = sizes.Where(p => p > limit).ToList();
        if (dropped.Count == 0) return sizes;
        Console.Error.WriteLine($"note: --pca default sizes {string.Join(",", dropped)} left out: PCA keeps at most " +
                                (rows <= features ? $"the {rows} training images of a fold's training part" : $"the {features} features of {layer}"));
        return sizes.Where(p => p <= limit).ToArray();
    }

    static double[] Logspace(string spec)
    {
        OptionChecks.ParseListOrLogRange(spec, out var values);
        return values;
    }

    static void Print(SweepRun run, SweepSummary summary, string outDir)
    {
        var r = run.Result;
        string P(double v) => v.ToString("P1", CultureInfo.InvariantCulture);
        var table = new Table().AddColumn("layer").AddColumn(new TableColumn("PCA").RightAligned()).AddColumn(new TableColumn("features").RightAligned())
            .AddColumn(new TableColumn("C").RightAligned()).AddColumn(new TableColumn("CV accuracy").RightAligned()).AddColumn(new TableColumn("test accuracy").RightAligned())
            .AddColumn(new TableColumn("SVM s").RightAligned()).AddColumn(new TableColumn("PCA s").RightAligned());
        foreach (var ch in summary.Choices)
        {
            string Mark(string s) => ch == summary.Best ? $"[bold]{Markup.Escape(s)}[/]" : Markup.Escape(s);
            table.AddRow(Mark(ch.Layer), Mark(ch.Pca == 0 ? "none" : ch.Pca.ToString(CultureInfo.InvariantCulture)), Mark(ch.Dim.ToString(CultureInfo.InvariantCulture)),
                Mark(ch.C.ToString("g4", CultureInfo.InvariantCulture)), Mark($"{P(ch.CvMean)} ± {P(ch.CvStd)}"), Mark(P(ch.TestAccuracy)),
                Mark(ch.GridSvmSeconds.ToString("F2", CultureInfo.InvariantCulture)), Mark(ch.Pca == 0 ? "" : ch.PcaSeconds.ToString("F2", CultureInfo.InvariantCulture)));
        }
        AnsiConsole.Write(table);
        foreach (var line in summary.Lines) Console.WriteLine(line);
        // One line per configuration that hit the iteration limit would bury the table: the first few, then a count.
        foreach (var w in r.Warnings.Take(3)) Console.WriteLine($"warning: {w}");
        var limited = r.Rows.Where(x => x.IterationLimitHits > 0).ToList();
        if (r.Warnings.Count > 3)
        {
            string range = limited.Count > 0 ? string.Create(CultureInfo.InvariantCulture, $", at C from {limited.Min(x => x.C):g4} to {limited.Max(x => x.C):g4}") : "";
            Console.WriteLine($"warning: ... {r.Warnings.Count - 3} more; in all {limited.Count} of {r.Rows.Count} configurations had SVMs stop at the iteration limit" +
                              $"{range} ({SweepReportWriter.ResultsJson} lists every warning)");
        }
        var skipped = run.Train.Skipped.Concat(run.Test.Skipped).ToList();
        foreach (var s in skipped) Console.WriteLine($"skipped: {s.Path}: {s.Reason}");
        var st = new[] { run.Train.Stats, run.Test.Stats };
        double net = st.Sum(s => s.ComputeSeconds);
        var network = net > 0 ? string.Create(CultureInfo.InvariantCulture, $"network {st.Sum(s => s.Computed) / net:F1} img/s on {run.Device}, ") : "";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"time: train features {run.Train.Stats.Seconds:F1} s, test features {run.Test.Stats.Seconds:F1} s ({r.Settings.Layers.Count} layer(s) in one pass, " +
            $"{network}{st.Sum(s => s.Cached)} rows of {r.Settings.Layers[0]} from the cache), " +
            $"grid {r.Rows.Count} configurations x {r.Settings.Folds + 1} fits on {r.Threads} thread(s) {r.GridSeconds:F1} s"));
        Console.WriteLine($"report: {Path.Combine(outDir, "index.html")} ({SweepReportWriter.ResultsCsv}, {SweepReportWriter.ResultsJson}, {SweepReportWriter.FoldsCsv}, figures)");
    }
}
