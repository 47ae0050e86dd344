using System.Globalization;
using ScottPlot;
using Tp7.Engine.Studies;

namespace Tp7.Engine.Reporting;

/// <summary>
/// The sweep's figures (ScottPlot): accuracy against C per layer, accuracy and SVM time against PCA size per layer,
/// and the explained-variance curves. One colour per layer across all figures. Log axes are drawn as log10 of the
/// values with ticks labelled in the values themselves.
/// </summary>
public static class SweepFigures
{
    const int Width = 1100, Height = 520, PanelWidth = 640, PanelHeight = 460;

    static Color ColorOf(int layer) => new ScottPlot.Palettes.Category10().GetColor(layer);

    /// <summary>
    /// One panel per layer on a shared accuracy axis (overlaid, six layers' bands hide each other): CV mean accuracy
    /// (line, with a ±1 std band) and test accuracy (dashed) against C, each layer at the configuration its title
    /// names (no PCA when that was swept, else its best PCA size); a ring marks the selected C.
    /// </summary>
    public static void SaveAccuracyAgainstC(string path, SweepResult r, IReadOnlyDictionary<string, int> pcaOfLayer)
    {
        var layers = r.Settings.Layers;
        var shown = r.Rows.Where(x => x.Pca == pcaOfLayer[x.Layer]).SelectMany(x => new[] { x.CvMean - x.CvStd, x.CvMean + x.CvStd, x.TestAccuracy })
            .Where(double.IsFinite).DefaultIfEmpty(0).ToArray();
        double floor = AccuracyFloor(shown);
        var panels = new List<Plot>();
        for (int l = 0; l < layers.Count; l++)
        {
            var rows = r.Rows.Where(x => x.Layer == layers[l] && x.Pca == pcaOfLayer[layers[l]]).OrderBy(x => x.C).ToList();
            if (rows.Count == 0) continue;
            var plt = new Plot();
            var color = ColorOf(l);
            double[] x = rows.Select(q => Math.Log10(q.C)).ToArray();
            double[] mean = rows.Select(q => 100 * q.CvMean).ToArray();
            if (rows.Count > 1)
            {
                var band = plt.Add.FillY(x, rows.Select(q => 100 * (q.CvMean - q.CvStd)).ToArray(), rows.Select(q => 100 * (q.CvMean + q.CvStd)).ToArray());
                band.FillColor = color.WithAlpha(0.2);
                band.LineColor = Colors.Transparent;
                band.LegendText = "CV ± 1 std";
            }
            var cv = plt.Add.Scatter(x, mean);
            cv.Color = color;
            cv.LineWidth = 2;
            cv.MarkerSize = 5;
            cv.LegendText = "CV mean";
            var test = plt.Add.Scatter(x, rows.Select(q => 100 * q.TestAccuracy).ToArray());
            test.Color = Colors.Black;
            test.LineWidth = 1.5f;
            test.LinePattern = LinePattern.Dashed;
            test.MarkerShape = MarkerShape.OpenSquare;
            test.MarkerSize = 5;
            test.LegendText = "test";
            var sel = rows.FindIndex(q => q.Selected);
            if (sel >= 0)
            {
                var m = plt.Add.Marker(x[sel], mean[sel], MarkerShape.OpenCircle, 15, Colors.Black);
                m.MarkerLineWidth = 2;
                m.LegendText = $"selected C={rows[sel].C.ToString("g3", CultureInfo.InvariantCulture)}";
            }
            var (cLo, cHi) = LogTicks(plt.Axes.Bottom, r.Settings.Cs);
            plt.Axes.SetLimits(cLo, cHi, floor, 100);
            plt.XLabel("C (log scale)");
            plt.YLabel("accuracy (%)");
            int pcaSize = pcaOfLayer[layers[l]];
            plt.Title(pcaSize == 0 ? $"{layers[l]} ({rows[0].Dim} features)" : $"{layers[l]} + PCA {pcaSize}");
            // Below the axes: inside, it hides the curves wherever they run.
            plt.ShowLegend(Edge.Bottom);
            panels.Add(plt);
        }
        int columns = panels.Count <= 2 ? panels.Count : panels.Count == 4 ? 2 : 3;
        ReportFiles.SavePanelGrid(path, columns switch { 1 => 800, 2 => 580, _ => 420 }, 440, columns, panels);
    }

    /// <summary>
    /// Two panels against the features the SVM sees (log2 axis; the rightmost point of each layer, a square, is no
    /// PCA): CV (line) and test (dashed) accuracy at the selected C, and the SVM time of the whole C grid (line) with
    /// the PCA fit time (dotted), log axis.
    /// </summary>
    public static void SaveAccuracyAndTimeAgainstPca(string path, SweepResult r, IReadOnlyList<SweepChoice> choices)
    {
        var acc = new Plot();
        var time = new Plot();
        var layers = r.Settings.Layers;
        var xs = new SortedSet<int>();
        for (int l = 0; l < layers.Count; l++)
        {
            var c = choices.Where(q => q.Layer == layers[l]).OrderBy(q => q.Dim).ToList();
            if (c.Count == 0) continue;
            var color = ColorOf(l);
            foreach (var q in c) xs.Add(q.Dim);
            double[] x = c.Select(q => Math.Log2(q.Dim)).ToArray();
            var cv = acc.Add.Scatter(x, c.Select(q => 100 * q.CvMean).ToArray());
            cv.Color = color;
            cv.LineWidth = 2;
            cv.LegendText = $"{layers[l]} CV";
            var test = acc.Add.Scatter(x, c.Select(q => 100 * q.TestAccuracy).ToArray());
            test.Color = color;
            test.LinePattern = LinePattern.Dashed;
            test.LegendText = $"{layers[l]} test";
            var svm = time.Add.Scatter(x, c.Select(q => Math.Log10(Math.Max(q.GridSvmSeconds, 1e-4))).ToArray());
            svm.Color = color;
            svm.LineWidth = 2;
            svm.LegendText = $"{layers[l]} SVM";
            var reduced = c.Where(q => q.Pca > 0).ToList();
            if (reduced.Count > 0)
            {
                var fit = time.Add.Scatter(reduced.Select(q => Math.Log2(q.Dim)).ToArray(), reduced.Select(q => Math.Log10(Math.Max(q.PcaSeconds, 1e-4))).ToArray());
                fit.Color = color;
                fit.LinePattern = LinePattern.Dotted;
                fit.MarkerShape = MarkerShape.OpenTriangleUp;
                fit.LegendText = $"{layers[l]} PCA fit";
            }
            foreach (var q in c.Where(q => q.Pca == 0))
            {
                acc.Add.Marker(Math.Log2(q.Dim), 100 * q.CvMean, MarkerShape.FilledSquare, 9, color);
                time.Add.Marker(Math.Log2(q.Dim), Math.Log10(Math.Max(q.GridSvmSeconds, 1e-4)), MarkerShape.FilledSquare, 9, color);
            }
        }
        foreach (var p in new[] { acc, time })
        {
            var ticks = xs.Select(v => (double)v).ToArray();
            p.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.Select(Math.Log2).ToArray(),
                ticks.Select(v => v.ToString(CultureInfo.InvariantCulture)).ToArray());
            p.XLabel("features the SVM sees (log scale; square = no PCA)");
            p.ShowLegend(Edge.Bottom);
        }
        acc.YLabel("accuracy (%)");
        acc.Title("Accuracy at the selected C: CV (line), test (dashed)");
        acc.Axes.SetLimitsY(AccuracyFloor(choices.SelectMany(q => new[] { q.CvMean, q.TestAccuracy }).Where(double.IsFinite).DefaultIfEmpty(0).ToArray()), 100);
        var secs = choices.SelectMany(q => new[] { q.GridSvmSeconds, q.PcaSeconds }).Where(v => v > 0).DefaultIfEmpty(1).ToArray();
        var (tLo, tHi) = LogTicks(time.Axes.Left, [Math.Max(secs.Min(), 1e-4), secs.Max()]);
        time.Axes.SetLimitsY(tLo, tHi);
        time.YLabel("seconds (log scale)");
        time.Title("SVM time of the C grid (line), PCA fit (dotted)");
        ReportFiles.SavePanels(path, PanelWidth, PanelHeight + 80, acc, time);
    }

    /// <summary>Cumulative explained-variance ratio against the number of components, one line per layer; grey lines at the PCA sizes swept.</summary>
    public static void SaveExplainedVariance(string path, SweepResult r)
    {
        var plt = new Plot();
        var layers = r.Settings.Layers;
        foreach (var size in r.Settings.PcaSizes.Where(p => p > 0))
        {
            var v = plt.Add.VerticalLine(size);
            v.Color = Colors.Gray.WithAlpha(0.5);
            v.LineWidth = 1;
            v.LinePattern = LinePattern.Dotted;
        }
        foreach (var pca in r.Pca)
        {
            int l = Math.Max(0, layers.ToList().IndexOf(pca.Layer));
            var cumulative = new double[pca.ExplainedVarianceRatio.Length];
            double sum = 0;
            for (int i = 0; i < cumulative.Length; i++) cumulative[i] = 100 * (sum += pca.ExplainedVarianceRatio[i]);
            var line = plt.Add.Scatter(Enumerable.Range(1, cumulative.Length).Select(i => (double)i).ToArray(), cumulative);
            line.Color = ColorOf(l);
            line.LineWidth = 2;
            line.MarkerSize = cumulative.Length > 60 ? 0 : 4;
            line.LegendText = $"{pca.Layer} ({pca.Dim} features)";
        }
        plt.XLabel("principal components");
        plt.YLabel("cumulative explained variance (%)");
        plt.Title("Explained variance of PCA fitted on all training features (dotted: sizes swept)");
        plt.Axes.SetLimitsY(0, 100);
        plt.Axes.SetLimitsX(0, Math.Max(1, r.Pca.Select(p => p.ExplainedVarianceRatio.Length).DefaultIfEmpty(1).Max()) * 1.02);
        plt.ShowLegend(Edge.Right);
        Save(plt, path, Width, Height);
    }

    /// <summary>The bottom of an accuracy axis (in %): 10 points below the lowest accuracy shown, on a multiple of 10, at least 0.</summary>
    static double AccuracyFloor(double[] accuracies) => Math.Max(0, 10 * Math.Floor(10 * accuracies.Min()) - 10);

    /// <summary>Ticks at the decades spanning the values (log10 on the axis), labelled as plain numbers; returns the axis range.</summary>
    static (double Lo, double Hi) LogTicks(IAxis axis, IReadOnlyList<double> values)
    {
        double lo = Math.Floor(Math.Log10(values.Min()) + 1e-9), hi = Math.Ceiling(Math.Log10(values.Max()) - 1e-9);
        if (hi <= lo) hi = lo + 1;
        var major = new List<double>();
        for (double e = lo; e <= hi + 1e-9; e++) major.Add(e);
        axis.TickGenerator = new ScottPlot.TickGenerators.NumericManual(major.ToArray(),
            major.Select(e => Math.Pow(10, e).ToString("g4", CultureInfo.InvariantCulture)).ToArray());
        return (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo));
    }

    static void Save(Plot plt, string path, int width, int height)
    {
        var tmp = path + ".tmp.png";
        plt.SavePng(tmp, width, height);
        File.Move(tmp, path, overwrite: true);
    }
}
