using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Tp7.Engine.Data;
using Tp7.Engine.Features;
using Tp7.Engine.Model;
using Tp7.Engine.Pipeline;
using Tp7.Engine.Reporting;
using Tp7.Engine.Svm;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 run`: the main job. Features, linear SVM, accuracy, per-class table, report folder.</summary>
static class RunCommand
{
    public static Command Create()
    {
        var layer = new Option<string?>("--layer") { Description = "VGG16: pool5, fc6, relu6, fc7, relu7 (default) or fc8; other models: a tap or any value name (default: the input of the last fully connected layer, else the output)" };
        var c = new Option<double>("--C") { Description = "SVM regularisation parameter", DefaultValueFactory = _ => 1.0 }.Positive();
        var loss = new Option<string>("--loss") { Description = "squared_hinge or hinge", DefaultValueFactory = _ => "squared_hinge" };
        loss.AcceptOnlyFromAmong("squared_hinge", "hinge");
        var noL2 = new Option<bool>("--no-l2") { Description = "Do not L2-normalise feature rows" };
        var batch = new Option<int>("--batch") { Description = "Images per forward pass", DefaultValueFactory = _ => 32 }.AtLeast(1);
        var output = new Option<string>("--out") { Description = "Report folder (created with the folders above it)", DefaultValueFactory = _ => "out/run" }.Writable();
        var noCache = new Option<bool>("--no-cache") { Description = "Neither read nor write the feature cache" };
        var command = new Command("run", "Transfer learning end to end: deep features (VGG16, ResNet18 or an ONNX model) + linear SVM + report")
            { layer, c, loss, noL2, batch, output, noCache };
        var model = new ModelOptions(command, defaultModel: "auto");
        var dataset = new DatasetOptions(command, "Seed of the split and of the SVM's coordinate order");
        var seed = dataset.Seed;
        var device = new DeviceOptions(command);
        command.SetHandler(parse =>
        {
            dataset.Check(parse);
            model.Check(parse, (graph, _) => { if (parse.GetValue(layer) is { } l) ImageModel.CanonicalLayer(graph, l); });
            device.CheckPrecision(parse);
            var ds = dataset.Open(parse);

            using var session = ModelSession.Open(parse, device, model);
            var settings = new RunSettings(parse.GetValue(layer), parse.GetValue(c),
                parse.GetValue(loss) == "hinge" ? SvmLoss.Hinge : SvmLoss.SquaredHinge, !parse.GetValue(noL2),
                parse.GetValue(batch), parse.GetValue(seed));
            var progress = new ProgressLine();
            var result = TransferLearning.Run(ds, session.Model, session.WeightsSha256, settings,
                parse.GetValue(noCache) ? null : FeatureCache.Default(), session.RandomWeights, progress.Report);
            progress.Finish();

            var outDir = parse.GetValue(output)!;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            RunReportWriter.Write(OptionChecks.CreateFolder(outDir), result);
            double reportSeconds = clock.Elapsed.TotalSeconds;
            Print(result, outDir, reportSeconds);
            if (session.RandomWeights)
                Console.WriteLine($"NOTE: these features come from RANDOM weights ({session.WeightsDescription}); the accuracy means little. {WeightsLocator.HowToGet}");
            return 0;
        });
        return command;
    }

    static void Print(RunResult r, string outDir, double reportSeconds)
    {
        var rep = r.Report;
        var names = r.Dataset.Classes;
        var table = new Table().AddColumn("class").AddColumn(new TableColumn("train").RightAligned()).AddColumn(new TableColumn("test").RightAligned())
            .AddColumn(new TableColumn("recall").RightAligned()).AddColumn(new TableColumn("precision").RightAligned()).AddColumn(new TableColumn("F1").RightAligned());
        for (int k = 0; k < names.Count; k++)
            table.AddRow(Markup.Escape(names[k]), r.Train.Labels.Count(l => l == k).ToString(), rep.Support[k].ToString(),
                rep.Recall[k].ToString("P1", CultureInfo.InvariantCulture), rep.Precision[k].ToString("P1", CultureInfo.InvariantCulture),
                rep.F1[k].ToString("F3", CultureInfo.InvariantCulture));
        AnsiConsole.Write(table);
        var skipped = r.Train.Skipped.Concat(r.Test.Skipped).ToList();
        foreach (var s in skipped) Console.WriteLine($"skipped: {s.Path}: {s.Reason}");
        var st = new[] { r.Train.Stats, r.Test.Stats };
        double net = st.Sum(s => s.ComputeSeconds);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"accuracy: {rep.Accuracy:P2} ({rep.NumSamples} test images, {names.Count} classes), {r.Model} layer {r.Settings.Layer}, C={r.Settings.C}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"time: train features {r.Times.ExtractTrain:F1} s, test features {r.Times.ExtractTest:F1} s, SVM {r.Times.TrainSvm:F2} s, evaluation {r.Times.Evaluate:F3} s, report {reportSeconds:F1} s"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"throughput: network {(net > 0 ? st.Sum(s => s.Computed) / net : 0):F1} img/s on {r.Device}, decode {r.Train.Stats.DecodePerCore:F0} img/s per core; {st.Sum(s => s.Cached)} features from cache; {skipped.Count} file(s) skipped"));
        Console.WriteLine($"report: {Path.Combine(outDir, "index.html")} (report.json, predictions.csv, confusion.png)");
    }
}
