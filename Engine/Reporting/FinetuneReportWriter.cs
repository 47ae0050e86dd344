using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using ScottPlot;
using static Tp7.Engine.Reporting.ReportFiles;
using Tp7.Engine.Training;

namespace Tp7.Engine.Reporting;

/// <summary>`tp7 finetune`'s report folder: report.json, predictions.csv, curves.png (loss and accuracy per epoch),
/// confusion.png and index.html with the per-class table.</summary>
public static class FinetuneReportWriter
{
    public static void Write(string dir, FinetuneResult r, IReadOnlyDictionary<string, string>? extra = null)
    {
        Directory.CreateDirectory(dir);
        var names = r.Dataset.Classes;
        var rep = r.Report;
        var doc = new Dictionary<string, object?>
        {
            ["accuracy"] = rep.Accuracy,
            ["num_test"] = rep.NumSamples,
            ["num_train"] = r.Dataset.Train.Count,
            ["classes"] = names,
            ["epochs"] = r.Epochs.Select(e => new
            {
                epoch = e.Epoch, lr = e.Lr, train_loss = e.TrainLoss, train_accuracy = e.TrainAccuracy, test_loss = e.TestLoss,
                test_accuracy = e.TestAccuracy, steps = e.Steps, seconds = e.Seconds, images_per_second = e.ImagesPerSecond,
            }).ToList(),
            ["steps"] = r.Steps,
            ["stopped_at_max_steps"] = r.StoppedAtMaxSteps,
            ["per_class"] = names.Select((n, k) => new
            {
                name = n, precision = rep.Precision[k], recall = rep.Recall[k], f1 = rep.F1[k], support = rep.Support[k],
            }).ToList(),
            ["macro_f1"] = rep.MacroF1,
            ["confusion_matrix"] = Enumerable.Range(0, names.Count).Select(i => Enumerable.Range(0, names.Count).Select(j => rep.Confusion[i, j]).ToArray()).ToArray(),
            ["settings"] = r.Settings,
            ["device"] = r.Device,
            ["model"] = r.ModelPath,
            ["extra"] = extra,
        };
        File.WriteAllText(Path.Combine(dir, "report.json"), JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));

        var csv = new StringBuilder("path,true,predicted\n");
        for (int i = 0; i < r.Predicted.Length; i++)
            csv.Append(Csv(r.TestPaths[i])).Append(',').Append(Csv(names[r.TestLabels[i]])).Append(',').Append(Csv(names[r.Predicted[i]])).Append('\n');
        File.WriteAllText(Path.Combine(dir, "predictions.csv"), csv.ToString());

        SaveCurves(Path.Combine(dir, "curves.png"), r);
        ConfusionFigure.Save(Path.Combine(dir, "confusion.png"), rep.Confusion, names,
            $"fine-tuned ({r.Settings.Tune}): accuracy {rep.Accuracy:P1}");
        File.WriteAllText(Path.Combine(dir, "index.html"), Html(r));
    }

    /// <summary>Two panels side by side: training and test loss per epoch; training and test accuracy per epoch.</summary>
    public static void SaveCurves(string path, FinetuneResult r)
    {
        double[] x = r.Epochs.Select(e => (double)e.Epoch).ToArray();
        var loss = new Plot();
        var trainLoss = loss.Add.Scatter(x, r.Epochs.Select(e => e.TrainLoss).ToArray());
        trainLoss.LegendText = "train (running mean, train mode)";
        var testLoss = loss.Add.Scatter(x, r.Epochs.Select(e => e.TestLoss).ToArray());
        testLoss.LegendText = "test";
        loss.Title("cross-entropy loss");
        Style(loss, x);
        var acc = new Plot();
        var trainAcc = acc.Add.Scatter(x, r.Epochs.Select(e => 100 * e.TrainAccuracy).ToArray());
        trainAcc.LegendText = "train (running, train mode)";
        var testAcc = acc.Add.Scatter(x, r.Epochs.Select(e => 100 * e.TestAccuracy).ToArray());
        testAcc.LegendText = "test";
        acc.Title("accuracy (%)");
        Style(acc, x);
        acc.Axes.SetLimitsY(0, 100);
        ReportFiles.SavePanels(path, 600, 420, loss, acc);
    }

    /// <summary>Whole-epoch ticks, and the legend below the axes where it hides no point.</summary>
    static void Style(Plot plot, double[] epochs)
    {
        plot.XLabel("epoch");
        int step = Math.Max(1, epochs.Length / 10);
        var ticks = epochs.Where((_, i) => i % step == 0).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks, ticks.Select(t => t.ToString(CultureInfo.InvariantCulture)).ToArray());
        if (epochs.Length > 0) plot.Axes.SetLimitsX(epochs[0] - 0.25, epochs[^1] + 0.25);
        plot.ShowLegend(Edge.Bottom);
    }

    static string Html(FinetuneResult r)
    {
        var names = r.Dataset.Classes;
        var rep = r.Report;
        var sb = new StringBuilder();
        string E(string s) => WebUtility.HtmlEncode(s);
        string P(double v) => v.ToString("P1", CultureInfo.InvariantCulture);
        sb.Append("<!doctype html><html><head><meta charset=\"utf-8\"><title>tp7 finetune</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}</style></head><body>");
        sb.Append($"<h1>Fine-tuning VGG16 ({E(r.Settings.Tune)}): {P(rep.Accuracy)} on {rep.NumSamples} test images</h1>");
        sb.Append($"<p>{E(r.Dataset.Root)}: {names.Count} classes, {r.Dataset.Train.Count} training images; {r.Epochs.Count} epoch(s), {r.Steps} steps, optimiser {E(r.Settings.Optimizer)}, lr {r.Settings.Lr.ToString(CultureInfo.InvariantCulture)}, batch {r.Settings.Batch}, device {E(r.Device)}.</p>");
        sb.Append("<img src=\"curves.png\" width=\"1000\"><h2>Per epoch</h2><table><tr><th>epoch</th><th>lr</th><th>train loss</th><th>train accuracy</th><th>test loss</th><th>test accuracy</th><th>img/s</th></tr>");
        foreach (var e in r.Epochs)
            sb.Append(CultureInfo.InvariantCulture, $"<tr><td>{e.Epoch}</td><td>{e.Lr:G3}</td><td>{e.TrainLoss:F4}</td><td>{P(e.TrainAccuracy)}</td><td>{e.TestLoss:F4}</td><td>{P(e.TestAccuracy)}</td><td>{e.ImagesPerSecond:F1}</td></tr>");
        sb.Append("</table><h2>Per class</h2><table><tr><th>class</th><th>test</th><th>recall</th><th>precision</th><th>F1</th></tr>");
        for (int k = 0; k < names.Count; k++)
            sb.Append(CultureInfo.InvariantCulture, $"<tr><td>{E(names[k])}</td><td>{rep.Support[k]}</td><td>{P(rep.Recall[k])}</td><td>{P(rep.Precision[k])}</td><td>{rep.F1[k]:F3}</td></tr>");
        sb.Append("</table><h2>Confusion matrix</h2><img src=\"confusion.png\" width=\"700\"></body></html>");
        return sb.ToString();
    }
}
