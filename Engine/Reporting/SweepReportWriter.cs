using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Tp7.Engine.Data;
using Tp7.Engine.Features;
using Tp7.Engine.Studies;
using static Tp7.Engine.Reporting.ReportFiles;

namespace Tp7.Engine.Reporting;

/// <summary>
/// A sweep with what it ran on. <paramref name="Train"/>, <paramref name="Test"/>: the features of the first layer
/// (every layer has the same rows); they give the rows' paths, labels, extraction stats and skipped files.
/// </summary>
public sealed record SweepRun(SweepResult Result, Dataset Dataset, FeatureSet Train, FeatureSet Test, string Model, string Weights,
    string WeightsSha256, bool RandomWeights, string Device, string Preprocessing, int Batch);

/// <summary>
/// Writes a sweep's results: results.csv (one row per layer, PCA size and C), results.json (settings, dataset, model,
/// rows, explained-variance ratios, summary, timings), folds.csv (the fold of every training row, for a replay),
/// split.json (the listing), the figures (accuracy_vs_c.png, pca.png, explained_variance.png) and index.html.
/// Every file is written atomically; numbers in CSV and JSON are invariant culture at round-trip precision.
/// </summary>
public static class SweepReportWriter
{
    public const string ResultsCsv = "results.csv", ResultsJson = "results.json", FoldsCsv = "folds.csv", SplitJson = "split.json",
        AccuracyFigure = "accuracy_vs_c.png", PcaFigure = "pca.png", VarianceFigure = "explained_variance.png";

    public static SweepSummary Write(string dir, SweepRun run)
    {
        Directory.CreateDirectory(dir);
        var r = run.Result;
        var summary = SweepSummary.Of(r);
        WriteText(Path.Combine(dir, ResultsCsv), Csv(r));
        WriteText(Path.Combine(dir, ResultsJson), Json(run, summary));
        WriteText(Path.Combine(dir, FoldsCsv), Folds(run));
        WriteText(Path.Combine(dir, SplitJson), RunReportWriter.SplitJson(run.Dataset));

        // Accuracy against C: each layer without PCA when that was swept, else at its best PCA size.
        var pcaOfLayer = r.Settings.Layers.ToDictionary(l => l,
            l => summary.Choices.Any(c => c.Layer == l && c.Pca == 0) ? 0 : SweepSummary.Rank(summary.Choices.Where(c => c.Layer == l))[0].Pca);
        SweepFigures.SaveAccuracyAgainstC(Path.Combine(dir, AccuracyFigure), r, pcaOfLayer);
        bool pca = r.Settings.PcaSizes.Any(p => p > 0);
        if (pca)
        {
            SweepFigures.SaveAccuracyAndTimeAgainstPca(Path.Combine(dir, PcaFigure), r, summary.Choices);
            if (r.Pca.Count > 0) SweepFigures.SaveExplainedVariance(Path.Combine(dir, VarianceFigure), r);
        }
        // A figure of an earlier sweep in the same folder would describe other numbers.
        foreach (var stale in new[] { PcaFigure, VarianceFigure })
            if ((!pca || stale == VarianceFigure && r.Pca.Count == 0) && File.Exists(Path.Combine(dir, stale))) File.Delete(Path.Combine(dir, stale));
        WriteText(Path.Combine(dir, "index.html"), Html(run, summary, pcaOfLayer));
        return summary;
    }

    static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
    static string PcaText(int pca) => pca == 0 ? "none" : pca.ToString(CultureInfo.InvariantCulture);

    /// <summary>layer,pca,C,dim,cv_mean,cv_std,selected,test_accuracy,svm_seconds,pca_seconds,iteration_limit_hits,fold_1..fold_k.</summary>
    static string Csv(SweepResult r)
    {
        var sb = new StringBuilder("layer,pca,C,dim,cv_mean,cv_std,selected,test_accuracy,svm_seconds,pca_seconds,iteration_limit_hits");
        for (int k = 1; k <= r.Settings.Folds; k++) sb.Append(",fold_").Append(k);
        sb.Append('\n');
        foreach (var x in r.Rows)
        {
            sb.Append(ReportFiles.Csv(x.Layer)).Append(',').Append(PcaText(x.Pca)).Append(',').Append(F(x.C)).Append(',').Append(x.Dim)
              .Append(',').Append(F(x.CvMean)).Append(',').Append(F(x.CvStd)).Append(',').Append(x.Selected ? '1' : '0')
              .Append(',').Append(F(x.TestAccuracy)).Append(',').Append(F(x.SvmSeconds)).Append(',').Append(F(x.PcaSeconds))
              .Append(',').Append(x.IterationLimitHits);
            foreach (var a in x.FoldAccuracies) sb.Append(',').Append(F(a));
            sb.Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>path,class,fold of each training row in row order (the rule of <see cref="Sweep.FoldOf"/>).</summary>
    static string Folds(SweepRun run)
    {
        var fold = Sweep.FoldOf(run.Train.Labels, run.Result.Settings.Folds);
        var sb = new StringBuilder("path,class,fold\n");
        for (int i = 0; i < run.Train.N; i++)
            sb.Append(ReportFiles.Csv(Path.GetRelativePath(run.Dataset.Root, run.Train.Paths[i]).Replace('\\', '/'))).Append(',')
              .Append(ReportFiles.Csv(run.Train.Classes[run.Train.Labels[i]])).Append(',').Append(fold[i]).Append('\n');
        return sb.ToString();
    }

    static object Choice(SweepChoice c) => new
    {
        layer = c.Layer, pca = c.Pca == 0 ? (object)"none" : c.Pca, dim = c.Dim, layer_dim = c.LayerDim, C = c.C, cv_mean = c.CvMean, cv_std = c.CvStd,
        test_accuracy = c.TestAccuracy, grid_svm_seconds = c.GridSvmSeconds, pca_seconds = c.PcaSeconds,
    };

    static string Json(SweepRun run, SweepSummary summary)
    {
        var r = run.Result;
        var stats = new[] { run.Train.Stats, run.Test.Stats };
        double net = stats.Sum(s => s.ComputeSeconds);
        var doc = new
        {
            format = "tp7-sweep",
            version = 1,
            settings = new
            {
                layers = r.Settings.Layers, C = r.Settings.Cs, folds = r.Settings.Folds,
                pca = r.Settings.PcaSizes.Select(p => p == 0 ? (object)"none" : p).ToList(),
                loss = r.Settings.Loss == Svm.SvmLoss.Hinge ? "hinge" : "squared_hinge", seed = r.Settings.Seed, max_threads = r.Settings.MaxThreads,
                l2_normalized = run.Train.L2, batch = run.Batch,
                fold_rule = "the i-th training row of each class, in row order, goes to fold i mod folds (folds.csv lists them)",
            },
            dataset = new
            {
                root = run.Dataset.Root, layout = run.Dataset.Layout, classes = r.Classes, train_rows = r.TrainCount, test_rows = r.TestCount,
                train_listed = run.Dataset.Train.Count, test_listed = run.Dataset.Test.Count,
                skipped = run.Train.Skipped.Concat(run.Test.Skipped).Select(s => new { path = s.Path, reason = s.Reason }).ToList(),
            },
            model = new
            {
                name = run.Model, weights = run.Weights, weights_sha256 = run.WeightsSha256, random_weights = run.RandomWeights,
                preprocessing = run.Preprocessing, device = run.Device,
            },
            rows = r.Rows.Select(x => new
            {
                layer = x.Layer, pca = x.Pca == 0 ? (object)"none" : x.Pca, C = x.C, dim = x.Dim, cv_mean = x.CvMean, cv_std = x.CvStd,
                fold_accuracies = x.FoldAccuracies, selected = x.Selected, test_accuracy = x.TestAccuracy, svm_seconds = x.SvmSeconds,
                pca_seconds = x.PcaSeconds, iteration_limit_hits = x.IterationLimitHits,
            }).ToList(),
            explained_variance = r.Pca.Select(p => new { layer = p.Layer, dim = p.Dim, ratio = p.ExplainedVarianceRatio, fit_seconds = p.FitSeconds }).ToList(),
            summary = new
            {
                best = Choice(summary.Best), runner_up_layer = summary.RunnerUp is { } u ? Choice(u) : null,
                selected = summary.Choices.Select(Choice).ToList(), lines = summary.Lines,
            },
            timings_seconds = new
            {
                extract_train = run.Train.Stats.Seconds, extract_test = run.Test.Stats.Seconds, grid = r.GridSeconds, threads = r.Threads,
                svm_total = r.Rows.Sum(x => x.SvmSeconds), pca_total = SweepSummary.PcaSeconds(r),
                network_images_per_second = net > 0 ? stats.Sum(s => s.Computed) / net : 0,
                features_from_cache = stats.Sum(s => s.Cached), features_computed = stats.Sum(s => s.Computed),
            },
            warnings = r.Warnings,
        };
        return JsonSerializer.Serialize(doc, new JsonSerializerOptions
        {
            WriteIndented = true,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        });
    }

    static string Html(SweepRun run, SweepSummary summary, IReadOnlyDictionary<string, int> pcaOfLayer)
    {
        var r = run.Result;
        var s = r.Settings;
        string E(string v) => WebUtility.HtmlEncode(v);
        string P(double v) => double.IsNaN(v) ? "n/a" : v.ToString("P1", CultureInfo.InvariantCulture);
        string N(double v) => v.ToString("g4", CultureInfo.InvariantCulture);
        string Sec(double v) => v.ToString(v < 10 ? "F2" : "F1", CultureInfo.InvariantCulture);
        string model = run.Model == "vgg16" ? "VGG16" : run.Model == "resnet18" ? "ResNet18" : run.Model;
        int configurations = s.Layers.Count * s.PcaSizes.Count * s.Cs.Count;
        var h = new StringBuilder();
        h.Append("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>tp7 sweep: ").Append(E(Path.GetFileName(run.Dataset.Root.TrimEnd('/'))))
         .Append("</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1150px;color:#222}table{border-collapse:collapse;margin:.5em 0}" +
                 "td,th{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}" +
                 "tr.best td{font-weight:bold;background:#eef4ff}.warn{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em}" +
                 "img{max-width:100%}li{margin:.35em 0}code{background:#f4f4f4;padding:0 3px}</style></head><body>");
        h.Append("<h1>Sweep: ").Append(E(model)).Append(" features &times; PCA &times; C, linear SVM</h1>");
        if (run.RandomWeights)
            h.Append("<p class=\"warn\"><b>Random weights.</b> These features come from an untrained network, so the accuracies say little about transfer learning. " +
                     "Get ImageNet weights with <code>python3 tools/convert_weights.py --download vgg16</code>, or sweep <code>--model resnet18</code>.</p>");
        h.Append(CultureInfo.InvariantCulture,
            $"<p>Data <code>{E(run.Dataset.Root)}</code> ({E(run.Dataset.Layout)}): {r.Classes.Count} classes, {r.TrainCount} training and {r.TestCount} test images. " +
            $"Model {E(model)}, weights <code>{E(run.Weights)}</code>, input {E(run.Preprocessing)}, device {E(run.Device)}.</p>");
        h.Append(CultureInfo.InvariantCulture,
            $"<p>Grid: {s.Layers.Count} layer(s) &times; {s.PcaSizes.Count} PCA size(s) &times; {s.Cs.Count} C value(s) = {configurations} configurations, " +
            $"each {s.Folds}-fold cross-validated on the training images and refitted on all of them ({configurations * (s.Folds + 1)} one-vs-rest SVMs, " +
            $"loss {(s.Loss == Svm.SvmLoss.Hinge ? "hinge" : "squared hinge")}), on {r.Threads} thread(s) in {Sec(r.GridSeconds)} s. " +
            $"Features: train {Sec(run.Train.Stats.Seconds)} s, test {Sec(run.Test.Stats.Seconds)} s, " +
            $"{run.Train.Stats.Cached + run.Test.Stats.Cached} of {run.Train.N + run.Test.N} rows of {E(s.Layers[0])} from the cache; every layer from one pass over the images.</p>");

        h.Append("<h2>Summary</h2><ul>");
        foreach (var line in summary.Lines) h.Append("<li>").Append(E(line)).Append("</li>");
        h.Append("</ul>");

        h.Append("<h2>Selected C per layer and PCA size</h2><table><tr><th>layer</th><th>PCA</th><th>features</th><th>C</th><th>CV accuracy</th>" +
                 "<th>± std</th><th>test accuracy</th><th>SVM s (C grid)</th><th>PCA fit s</th></tr>");
        foreach (var c in summary.Choices)
            h.Append(c == summary.Best ? "<tr class=\"best\">" : "<tr>").Append(CultureInfo.InvariantCulture,
                $"<td>{E(c.Layer)}</td><td>{PcaText(c.Pca)}</td><td>{c.Dim}</td><td>{N(c.C)}</td><td>{P(c.CvMean)}</td><td>{P(c.CvStd)}</td>" +
                $"<td>{P(c.TestAccuracy)}</td><td>{Sec(c.GridSvmSeconds)}</td><td>{(c.Pca == 0 ? "" : Sec(c.PcaSeconds))}</td></tr>");
        h.Append("</table><p>Bold: the best by CV accuracy (ties: fewer features). The selected C of each row is the one with the best mean CV accuracy " +
                 "(ties: the smallest C); its test accuracy comes from an SVM refitted at that C on all training images.</p>");

        var shownAt = pcaOfLayer.Where(kv => kv.Value != 0).Select(kv => $"{kv.Key} at PCA {kv.Value}").ToList();
        h.Append("<h2>Accuracy against C</h2><img src=\"").Append(AccuracyFigure).Append("\" alt=\"CV and test accuracy against C per layer\">");
        h.Append("<p>").Append(shownAt.Count == 0 ? "Every layer without PCA." : E($"Without PCA where swept; {string.Join(", ", shownAt)}.")).Append("</p>");
        if (s.PcaSizes.Any(p => p > 0))
        {
            h.Append("<h2>PCA: accuracy and SVM time against the number of features</h2><img src=\"").Append(PcaFigure).Append("\" alt=\"accuracy and SVM time against PCA size\">");
            if (r.Pca.Count > 0)
                h.Append("<h2>Explained variance</h2><img src=\"").Append(VarianceFigure).Append("\" alt=\"cumulative explained variance against components\">");
        }
        else h.Append("<p>No PCA size was requested (<code>--pca none</code>), so there are no PCA figures.</p>");

        h.Append(CultureInfo.InvariantCulture, $"<h2>Every configuration ({r.Rows.Count})</h2><details><summary>table</summary><table><tr><th>layer</th><th>PCA</th><th>C</th><th>features</th>" +
                 $"<th>CV mean</th><th>CV std</th><th>selected</th><th>test</th><th>SVM s</th><th>limit hits</th>");
        for (int k = 1; k <= s.Folds; k++) h.Append("<th>fold ").Append(k).Append("</th>");
        h.Append("</tr>");
        foreach (var x in r.Rows)
        {
            h.Append(x.Selected ? "<tr class=\"best\">" : "<tr>").Append(CultureInfo.InvariantCulture,
                $"<td>{E(x.Layer)}</td><td>{PcaText(x.Pca)}</td><td>{N(x.C)}</td><td>{x.Dim}</td><td>{P(x.CvMean)}</td><td>{P(x.CvStd)}</td><td>{(x.Selected ? "yes" : "")}</td>" +
                $"<td>{P(x.TestAccuracy)}</td><td>{Sec(x.SvmSeconds)}</td><td>{x.IterationLimitHits}</td>");
            foreach (var a in x.FoldAccuracies) h.Append("<td>").Append(P(a)).Append("</td>");
            h.Append("</tr>");
        }
        h.Append("</table></details>");

        h.Append(CultureInfo.InvariantCulture,
            $"<h2>Folds</h2><p>Stratified and deterministic: the i-th training image of each class (in listing order, after any undecodable image is left out) " +
            $"goes to fold i mod {s.Folds}. <a href=\"{FoldsCsv}\">{FoldsCsv}</a> lists the fold of every training image, so scikit-learn can replay the sweep " +
            $"(<code>tools/reference_sweep.py</code>, see docs/sweep.md).</p>");
        if (r.Warnings.Count > 0)
        {
            var limited = r.Rows.Where(x => x.IterationLimitHits > 0).ToList();
            h.Append(CultureInfo.InvariantCulture, $"<h2>Warnings ({r.Warnings.Count})</h2>");
            if (limited.Count > 0)
                h.Append(CultureInfo.InvariantCulture,
                    $"<p>{limited.Count} of {r.Rows.Count} configurations had binary SVMs stop at the iteration limit before the tolerance, at C from {N(limited.Min(x => x.C))} " +
                    $"to {N(limited.Max(x => x.C))} (column <code>iteration_limit_hits</code>).</p>");
            h.Append("<details><summary>every warning</summary><ul>");
            foreach (var w in r.Warnings) h.Append("<li>").Append(E(w)).Append("</li>");
            h.Append("</ul></details>");
        }
        var skipped = run.Train.Skipped.Concat(run.Test.Skipped).ToList();
        if (skipped.Count > 0)
        {
            h.Append(CultureInfo.InvariantCulture, $"<h2>Skipped files ({skipped.Count})</h2><table><tr><th>file</th><th>reason</th></tr>");
            foreach (var sk in skipped) h.Append("<tr><td>").Append(E(sk.Path)).Append("</td><td style=\"text-align:left\">").Append(E(sk.Reason)).Append("</td></tr>");
            h.Append("</table>");
        }
        h.Append("<p>Files: ");
        h.AppendJoin(", ", new[] { ResultsCsv, ResultsJson, FoldsCsv, SplitJson }.Select(f => $"<a href=\"{f}\">{f}</a>"));
        h.Append(".</p></body></html>\n");
        return h.ToString();
    }
}
