using System.Globalization;
using Tp7.Engine.Studies;

namespace Tp7.Engine.Reporting;

/// <summary>
/// One (layer, PCA size) at its selected C. <paramref name="LayerDim"/>: the layer's own feature count (0 when the
/// sweep has no row that says it); <paramref name="GridSvmSeconds"/>: SVM time of all its C values (CV fits and refits).
/// </summary>
public sealed record SweepChoice(string Layer, int Pca, int Dim, int LayerDim, double C, double CvMean, double CvStd, double TestAccuracy,
    double GridSvmSeconds, double PcaSeconds)
{
    public string Name => Pca == 0 ? Layer : $"{Layer} + PCA {Pca}";
}

/// <summary>
/// What a sweep found, in sentences made from its own numbers only: the best layer and why (dimension, CV and test
/// accuracy against the runner-up), the best C and how flat the CV curve is around it, and what PCA costs (fit time)
/// and saves (SVM time, dimension) and does to accuracy. Choices rank by mean CV accuracy (never by test accuracy,
/// which would tune on the test set); equal means go to the smaller dimension, then to the earlier configuration.
/// "Within one fold std" compares a CV-mean gap with the larger of the two population stds of the fold accuracies.
/// </summary>
public sealed record SweepSummary(SweepChoice Best, SweepChoice? RunnerUp, IReadOnlyList<SweepChoice> Choices, IReadOnlyList<string> Lines)
{
    public static SweepSummary Of(SweepResult r)
    {
        var layerDim = LayerDims(r);
        var choices = r.Rows.GroupBy(x => (x.Layer, x.Pca)).Select(g =>
        {
            var s = g.Single(x => x.Selected);
            return new SweepChoice(s.Layer, s.Pca, s.Dim, layerDim.GetValueOrDefault(s.Layer), s.C, s.CvMean, s.CvStd, s.TestAccuracy,
                g.Sum(x => x.SvmSeconds), s.PcaSeconds);
        }).ToList();
        var ranked = Rank(choices);
        var best = ranked[0];
        var runnerUp = ranked.FirstOrDefault(c => c.Layer != best.Layer);
        var lines = new List<string>
        {
            BestLine(best, r),
        };
        if (runnerUp != null) lines.Add(RunnerUpLine(best, runnerUp, r.TestCount));
        else lines.Add($"Only one layer was swept ({best.Layer}), so there is no other layer to compare it with.");
        lines.Add(BestCLine(best, r));
        lines.AddRange(PcaLines(best.Layer, choices, r));
        return new SweepSummary(best, runnerUp, choices, lines);
    }

    /// <summary>
    /// Best first: mean CV accuracy, then fewer features, then the sweep's order. Means are compared at 1e-9: equal fold
    /// accuracies summed in another order differ in the last bits, and that must not decide.
    /// </summary>
    public static List<SweepChoice> Rank(IEnumerable<SweepChoice> choices)
        => choices.Select((c, i) => (c, i)).OrderByDescending(t => Math.Round(t.c.CvMean, 9)).ThenBy(t => t.c.Dim).ThenBy(t => t.i).Select(t => t.c).ToList();

    /// <summary>
    /// Seconds of PCA fitting over the sweep: per layer the largest of its sizes' fit times (Sweep fits each fold's
    /// PCA once at the largest size and reads the smaller sizes off it, so every size of a layer reports that one
    /// fit), summed over layers.
    /// </summary>
    public static double PcaSeconds(SweepResult r)
        => r.Rows.Where(x => x.Pca > 0).GroupBy(x => x.Layer).Sum(g => g.Max(x => x.PcaSeconds));

    /// <summary>Each layer's own dimension: its rows without PCA say it, else its explained-variance entry.</summary>
    public static Dictionary<string, int> LayerDims(SweepResult r)
    {
        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in r.Pca) d[p.Layer] = p.Dim;
        foreach (var row in r.Rows.Where(x => x.Pca == 0)) d[row.Layer] = row.Dim;
        return d;
    }

    static string BestLine(SweepChoice b, SweepResult r)
    {
        string what = b.Pca == 0 ? $"{b.Layer} ({b.Dim} features)"
            : $"{b.Layer} reduced by PCA to {b.Pca} components" + (b.LayerDim > 0 ? $" (of {b.LayerDim} features)" : "");
        return $"Best by cross-validation: {what}, CV accuracy {P(b.CvMean)} ± {Pts(b.CvStd)} points over {r.Settings.Folds} folds at C={N(b.C)}, " +
               $"test accuracy {P(b.TestAccuracy)} ({r.TestCount} test images).";
    }

    static string RunnerUpLine(SweepChoice b, SweepChoice u, int testCount)
    {
        var s = $"Runner-up layer: {u.Name} ({u.Dim} features), CV {P(u.CvMean)} ± {Pts(u.CvStd)} points, test {P(u.TestAccuracy)}. ";
        double gap = Math.Round(b.CvMean - u.CvMean, 9), std = Math.Max(b.CvStd, u.CvStd);
        if (gap == 0)
            s += b.Dim < u.Dim ? $"They tie on CV accuracy; {b.Layer} ranks first for its fewer features ({b.Dim} against {u.Dim}). "
                : $"They tie on CV accuracy and dimension; {b.Layer} ranks first by the order of --layers. ";
        else if (gap <= std)
            s += $"{b.Name} leads by {Pts(gap)} points of CV accuracy, within one fold std ({Pts(std)} points): the two are not clearly apart. ";
        else
            s += $"{b.Name} leads by {Pts(gap)} points of CV accuracy, more than one fold std ({Pts(std)} points). ";
        if (b.Dim != u.Dim && gap != 0)
            s += b.Dim < u.Dim ? $"It also needs {Ratio(u.Dim, b.Dim)} fewer features ({b.Dim} against {u.Dim}). "
                : $"It needs {Ratio(b.Dim, u.Dim)} the features ({b.Dim} against {u.Dim}). ";
        double dt = Math.Round(b.TestAccuracy - u.TestAccuracy, 9);
        s += dt > 0 ? $"On the test set it scores {Pts(dt)} points higher."
            : dt == 0 ? "On the test set both score the same."
            : $"On the test set the runner-up scores higher ({P(u.TestAccuracy)} against {P(b.TestAccuracy)}; one test image is {Pts(1.0 / testCount)} points).";
        return s;
    }

    static string BestCLine(SweepChoice b, SweepResult r)
    {
        var curve = r.Rows.Where(x => x.Layer == b.Layer && x.Pca == b.Pca).OrderBy(x => x.C).ToList();
        int at = curve.FindIndex(x => x.Selected);
        var s = $"Best C for {b.Name}: C={N(b.C)}, of {curve.Count} values from {N(curve[0].C)} to {N(curve[^1].C)}. ";
        if (curve.Count == 1) return s + "With one C there is no curve to read.";
        // The run of C values around the chosen one whose CV mean stays within one fold std of it.
        bool Near(SweepRow x) => Math.Round(curve[at].CvMean - x.CvMean, 9) <= curve[at].CvStd;
        int lo = at, hi = at;
        while (lo > 0 && Near(curve[lo - 1])) lo--;
        while (hi < curve.Count - 1 && Near(curve[hi + 1])) hi++;
        string band = b.CvStd > 0 ? $"within one fold std ({Pts(b.CvStd)} points) of it" : "at its CV accuracy";
        s += lo == hi ? $"No neighbouring C stays {band}: the choice of C matters here. "
            : $"CV accuracy stays {band} from C={N(curve[lo].C)} to C={N(curve[hi].C)} ({hi - lo + 1} of {curve.Count} values): the curve is flat there. ";
        if (at == 0) s += "It is the smallest C tried, so a better C may lie below the grid (widen --C). ";
        else if (at == curve.Count - 1) s += "It is the largest C tried, so a better C may lie above the grid (widen --C). ";
        var bestTest = curve.OrderByDescending(x => x.TestAccuracy).ThenBy(x => x.C).First();
        s += bestTest.TestAccuracy > curve[at].TestAccuracy
            ? $"The test set alone would have picked C={N(bestTest.C)} ({P(bestTest.TestAccuracy)} against {P(curve[at].TestAccuracy)})."
            : "No other C scores higher on the test set.";
        return s.TrimEnd();
    }

    static IEnumerable<string> PcaLines(string layer, List<SweepChoice> choices, SweepResult r)
    {
        var reduced = choices.Where(c => c.Pca > 0).ToList();
        if (reduced.Count == 0)
        {
            yield return "No PCA size was requested (--pca none), so the sweep says nothing about what PCA costs or saves.";
            yield break;
        }
        var none = choices.SingleOrDefault(c => c.Layer == layer && c.Pca == 0);
        var sizes = reduced.Where(c => c.Layer == layer).OrderBy(c => c.Pca).ToList();
        var variance = r.Pca.SingleOrDefault(p => p.Layer == layer);
        string Kept(int p) => variance != null && p <= variance.ExplainedVarianceRatio.Length
            ? $", keeping {P(variance.ExplainedVarianceRatio.Take(p).Sum())} of the variance" : "";
        if (none == null)
        {
            var top = Rank(sizes)[0];
            yield return $"PCA on {layer}: the sweep has no run without PCA to compare with; of the sizes tried, {top.Pca} scores best " +
                         $"(CV {P(top.CvMean)}, test {P(top.TestAccuracy)}{Kept(top.Pca)}).";
        }
        else
        {
            // The smallest size whose CV accuracy is within one fold std of no PCA: the cheapest that costs no clear accuracy.
            var enough = sizes.FirstOrDefault(c => Math.Round(none.CvMean - c.CvMean, 9) <= Math.Max(none.CvStd, c.CvStd));
            if (enough == null)
            {
                var top = Rank(sizes)[0];
                yield return $"PCA on {layer} ({none.Dim} features): every size tried loses more than one fold std of CV accuracy; " +
                             $"the best, {top.Pca} components, reaches {P(top.CvMean)} against {P(none.CvMean)} without PCA.";
            }
            else
            {
                double delta = Math.Round(enough.CvMean - none.CvMean, 9);
                string effect = delta == 0 ? "the same CV accuracy as without PCA"
                    : delta > 0 ? $"CV accuracy {P(enough.CvMean)}, {Pts(delta)} points above no PCA ({P(none.CvMean)})"
                    : $"CV accuracy {P(enough.CvMean)}, {Pts(-delta)} points below no PCA ({P(none.CvMean)}) but within one fold std";
                double withPca = enough.GridSvmSeconds + enough.PcaSeconds;
                string balance = withPca < none.GridSvmSeconds
                    ? $"so PCA saves {S(none.GridSvmSeconds - withPca)} in all"
                    : $"so PCA costs {S(withPca - none.GridSvmSeconds)} more than it saves";
                yield return $"PCA on {layer}: {enough.Pca} components ({Ratio(none.Dim, enough.Pca)} fewer features than {none.Dim}{Kept(enough.Pca)}) give {effect}, " +
                             $"test {P(enough.TestAccuracy)} against {P(none.TestAccuracy)}. The SVMs of its C grid took {S(enough.GridSvmSeconds)} " +
                             $"instead of {S(none.GridSvmSeconds)} and the PCA fits {S(enough.PcaSeconds)}, {balance}.";
            }
            var better = sizes.Where(c => Math.Round(c.CvMean - none.CvMean, 9) > Math.Max(none.CvStd, c.CvStd)).ToList();
            if (better.Count > 0)
                yield return $"On {layer}, PCA to {string.Join(", ", better.Select(c => c.Pca))} components raises CV accuracy by more than one fold std " +
                             $"(best {P(better.Max(c => c.CvMean))} against {P(none.CvMean)} without PCA).";
        }
        // Over every layer swept both ways: the whole grid's time with PCA against without.
        var pairs = reduced.Select(c => (c, n: choices.SingleOrDefault(x => x.Layer == c.Layer && x.Pca == 0))).Where(t => t.n != null).ToList();
        if (pairs.Count > 0 && choices.Select(c => c.Layer).Distinct().Count() > 1)
        {
            double svm = pairs.Sum(t => t.c.GridSvmSeconds) / pairs.Count;
            double full = pairs.Select(t => t.n!).Distinct().Sum(n => n.GridSvmSeconds) / pairs.Select(t => t.n!).Distinct().Count();
            yield return $"Over all layers, one PCA size's C grid took {S(svm)} of SVM time on average against {S(full)} on full features; " +
                         $"the PCA fits of the sweep took {S(PcaSeconds(r))}.";
        }
    }

    static string P(double v) => double.IsNaN(v) ? "n/a" : v.ToString("P1", CultureInfo.InvariantCulture);
    static string Pts(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture);
    static string N(double v) => v.ToString("g4", CultureInfo.InvariantCulture);
    static string S(double seconds) => seconds.ToString(seconds < 10 ? "F2" : "F1", CultureInfo.InvariantCulture) + " s";
    static string Ratio(int big, int small) => (big / (double)small).ToString(big / (double)small >= 10 ? "F0" : "F1", CultureInfo.InvariantCulture) + "x";
}
