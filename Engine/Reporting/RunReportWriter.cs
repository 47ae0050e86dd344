using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Tp7.Engine.Imaging;
using Tp7.Engine.Pipeline;
using static Tp7.Engine.Reporting.ReportFiles;

namespace Tp7.Engine.Reporting;

/// <summary>
/// Writes a run's results: report.json, predictions.csv (path,true,predicted), confusion.png and index.html (all of
/// it, with the most confused class pairs and thumbnails of misclassified images). Each file is written atomically.
/// </summary>
public static class RunReportWriter
{
    public static void Write(string dir, RunResult r, IReadOnlyDictionary<string, string>? extra = null)
    {
        Directory.CreateDirectory(dir);
        var names = r.Dataset.Classes;
        var rep = r.Report;
        var confused = MostConfused(rep.Confusion, names, 10);
        var doc = new Dictionary<string, object?>
        {
            ["accuracy"] = rep.Accuracy,
            ["num_test"] = rep.NumSamples,
            ["num_train"] = r.Train.N,
            ["classes"] = names,
            ["per_class"] = names.Select((n, k) => new
            {
                name = n, precision = rep.Precision[k], recall = rep.Recall[k], f1 = rep.F1[k],
                support = rep.Support[k], train = r.Train.Labels.Count(l => l == k),
            }).ToList(),
            ["per_class_recall"] = names.Select((n, k) => new KeyValuePair<string, double>(n, rep.Recall[k])).ToDictionary(),
            ["macro_f1"] = rep.MacroF1,
            ["confusion_matrix"] = Enumerable.Range(0, names.Count).Select(i => Enumerable.Range(0, names.Count).Select(j => rep.Confusion[i, j]).ToArray()).ToArray(),
            ["most_confused"] = confused.Select(c => new { true_class = c.True, predicted = c.Predicted, count = c.Count }).ToList(),
            ["skipped"] = r.Train.Skipped.Concat(r.Test.Skipped).Select(s => new { path = s.Path, reason = s.Reason }).ToList(),
            ["timings_seconds"] = new
            {
                extract_train = r.Times.ExtractTrain, extract_test = r.Times.ExtractTest, train_svm = r.Times.TrainSvm,
                evaluate = r.Times.Evaluate, total = r.Times.Total,
                network_images_per_second = new[] { r.Train.Stats, r.Test.Stats }.Sum(s => s.ComputeSeconds) is var cs and > 0
                    ? new[] { r.Train.Stats, r.Test.Stats }.Sum(s => s.Computed) / cs : 0,
                decode_images_per_second_per_core = r.Train.Stats.DecodePerCore,
                features_from_cache = r.Train.Stats.Cached + r.Test.Stats.Cached,
            },
            ["settings"] = new
            {
                data = r.Dataset.Root, layout = r.Dataset.Layout, layer = r.Settings.Layer, C = r.Settings.C,
                loss = r.Settings.Loss.ToString(), l2_normalized = r.Settings.L2, batch = r.Settings.BatchSize, seed = r.Settings.Seed,
                device = r.Device, model = r.Model, preprocessing = r.Preprocessing, weights = r.Weights, weights_sha256 = r.Train.WeightsSha256, random_weights = r.RandomWeights,
                svm_iterations = r.Svm.Iterations, svm_warnings = r.Svm.Warnings,
            },
            ["extra"] = extra,
        };
        WriteText(Path.Combine(dir, "report.json"), JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));

        var csv = new StringBuilder("path,true,predicted\n");
        for (int i = 0; i < r.Test.N; i++)
            csv.Append(Csv(r.Test.Paths[i])).Append(',').Append(Csv(names[r.Test.Labels[i]])).Append(',').Append(Csv(names[r.Predicted[i]])).Append('\n');
        WriteText(Path.Combine(dir, "predictions.csv"), csv.ToString());

        WriteText(Path.Combine(dir, "split.json"), SplitJson(r.Dataset));
        ConfusionFigure.Save(Path.Combine(dir, "confusion.png"), rep.Confusion, names,
            $"{r.Settings.Layer} + linear SVM (C={r.Settings.C.ToString(CultureInfo.InvariantCulture)}): accuracy {rep.Accuracy:P1}");
        WriteText(Path.Combine(dir, "index.html"), Html(r, confused));
    }

    /// <summary>
    /// The train/test split in the "tp7-split" v1 format that tools/reference_pipeline.py --split-file replays:
    /// paths relative to the dataset root with '/' separators, labels as class names.
    /// </summary>
    internal static string SplitJson(Tp7.Engine.Data.Dataset dataset)
    {
        var root = dataset.Root;
        object Items(IEnumerable<Tp7.Engine.Data.DatasetItem> items) => items
            .Select(i => new { path = Path.GetRelativePath(root, i.Path).Replace('\\', '/'), label = dataset.Classes[i.Label] }).ToList();
        return JsonSerializer.Serialize(new
        {
            format = "tp7-split", version = 1, classes = dataset.Classes,
            train = Items(dataset.Train), test = Items(dataset.Test),
        }, new JsonSerializerOptions { WriteIndented = true });
    }

    public sealed record Confusion(string True, string Predicted, int Count);

    public static List<Confusion> MostConfused(int[,] m, IReadOnlyList<string> names, int top)
    {
        var list = new List<Confusion>();
        for (int i = 0; i < names.Count; i++)
            for (int j = 0; j < names.Count; j++)
                if (i != j && m[i, j] > 0) list.Add(new(names[i], names[j], m[i, j]));
        return list.OrderByDescending(c => c.Count).ThenBy(c => c.True, StringComparer.Ordinal).Take(top).ToList();
    }

    static string Html(RunResult r, List<Confusion> confused)
    {
        var names = r.Dataset.Classes;
        var rep = r.Report;
        string E(string s) => WebUtility.HtmlEncode(s);
        var h = new StringBuilder();
        h.Append("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>tp7 run: ").Append(E(Path.GetFileName(r.Dataset.Root.TrimEnd('/'))))
         .Append("</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}table{border-collapse:collapse}" +
                 "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}" +
                 ".warn{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em}.thumbs{display:flex;flex-wrap:wrap;gap:8px}" +
                 ".thumbs figure{margin:0;width:120px;font-size:11px}.thumbs img{width:112px;height:112px;image-rendering:auto}" +
                 ".bar{display:inline-block;height:10px;background:#4a7bd0}</style></head><body>");
        h.Append("<h1>Transfer learning: ").Append(E(r.Model == "vgg16" ? "VGG16" : r.Model == "resnet18" ? "ResNet18" : r.Model)).Append(' ').Append(E(r.Settings.Layer ?? "")).Append(" features + linear SVM</h1>");
        if (r.RandomWeights)
            h.Append("<p class=\"warn\"><b>Random weights.</b> These features come from an untrained VGG16, so the accuracy says little about transfer learning. Get ImageNet weights with <code>python3 tools/convert_weights.py --download vgg16</code>.</p>");
        h.Append(CultureInfo.InvariantCulture, $"<p><b>Accuracy {rep.Accuracy:P2}</b> on {rep.NumSamples} test images ({r.Train.N} training images, {names.Count} classes). Macro F1 {rep.MacroF1:F3}.</p>");
        h.Append("<p>Data <code>").Append(E(r.Dataset.Root)).Append("</code> (").Append(E(r.Dataset.Layout)).Append("), weights <code>").Append(E(r.Weights))
         .Append("</code>, device ").Append(E(r.Device)).Append(CultureInfo.InvariantCulture, $", C={r.Settings.C}, loss {r.Settings.Loss}, L2 {(r.Settings.L2 ? "on" : "off")}.</p>");
        h.Append(CultureInfo.InvariantCulture,
            $"<p>Time: train features {r.Times.ExtractTrain:F1} s, test features {r.Times.ExtractTest:F1} s, SVM {r.Times.TrainSvm:F2} s, evaluation {r.Times.Evaluate:F3} s.</p>");
        h.Append("<h2>Per class</h2><table><tr><th>class</th><th>train</th><th>test</th><th>recall</th><th></th><th>precision</th><th>F1</th></tr>");
        for (int k = 0; k < names.Count; k++)
            h.Append(CultureInfo.InvariantCulture,
                $"<tr><td>{E(names[k])}</td><td>{r.Train.Labels.Count(l => l == k)}</td><td>{rep.Support[k]}</td><td>{rep.Recall[k]:P1}</td><td style=\"text-align:left\"><span class=\"bar\" style=\"width:{(int)(rep.Recall[k] * 150)}px\"></span></td><td>{rep.Precision[k]:P1}</td><td>{rep.F1[k]:F3}</td></tr>");
        h.Append("</table><h2>Confusion matrix</h2><img src=\"confusion.png\" alt=\"confusion matrix\" style=\"max-width:100%\">");
        h.Append("<h2>Most confused pairs</h2><table><tr><th>true class</th><th>predicted as</th><th>images</th></tr>");
        foreach (var c in confused) h.Append($"<tr><td>{E(c.True)}</td><td>{E(c.Predicted)}</td><td>{c.Count}</td></tr>");
        if (confused.Count == 0) h.Append("<tr><td colspan=3>none</td></tr>");
        h.Append("</table>");

        var wrong = Enumerable.Range(0, r.Test.N).Where(i => r.Predicted[i] != r.Test.Labels[i]).ToList();
        h.Append(CultureInfo.InvariantCulture, $"<h2>Misclassified test images ({wrong.Count})</h2><div class=\"thumbs\">");
        foreach (var i in wrong.Take(120))
        {
            string? uri = Thumbnail(r.Test.Paths[i]);
            h.Append("<figure>").Append(uri != null ? $"<img src=\"{uri}\" alt=\"\">" : "<div>(no preview)</div>")
             .Append("<figcaption>").Append(E(Path.GetFileName(r.Test.Paths[i]))).Append("<br>true <b>").Append(E(names[r.Test.Labels[i]]))
             .Append("</b><br>predicted <b>").Append(E(names[r.Predicted[i]])).Append("</b></figcaption></figure>");
        }
        h.Append("</div>");
        if (wrong.Count > 120) h.Append(CultureInfo.InvariantCulture, $"<p>… and {wrong.Count - 120} more in predictions.csv.</p>");
        var skipped = r.Train.Skipped.Concat(r.Test.Skipped).ToList();
        h.Append(CultureInfo.InvariantCulture, $"<h2>Skipped files ({skipped.Count})</h2>");
        if (skipped.Count > 0)
        {
            h.Append("<table><tr><th>file</th><th>reason</th></tr>");
            foreach (var s in skipped) h.Append($"<tr><td>{E(s.Path)}</td><td style=\"text-align:left\">{E(s.Reason)}</td></tr>");
            h.Append("</table>");
        }
        h.Append("<p>Files: <a href=\"report.json\">report.json</a>, <a href=\"predictions.csv\">predictions.csv</a>, <a href=\"split.json\">split.json</a>.</p></body></html>\n");
        return h.ToString();
    }

    /// <summary>A 112x112 PNG data URI of an image as the network saw it (squashed to a square), or null if it fails.</summary>
    static string? Thumbnail(string path)
    {
        try
        {
            var small = ImageLoader.LoadResized(path, Preprocessing.ImageNet with { Size = 112 });
            using var img = Image.LoadPixelData<Rgb24>(small.Pixels, small.Width, small.Height);
            using var ms = new MemoryStream();
            img.SaveAsPng(ms);
            return "data:image/png;base64," + Convert.ToBase64String(ms.ToArray());
        }
        catch (Exception e) when (e is ImageDecodeException or IOException)
        {
            return null;
        }
    }
}
