using System.Globalization;
using System.Text;

namespace Tp7.Engine.Svm;

/// <summary>
/// Accuracy, per-class precision/recall/F1 and the confusion matrix for labels 0..NumClasses−1, with
/// scikit-learn's conventions: Confusion[true, predicted]; a ratio whose denominator is 0 is reported as 0
/// (sklearn's zero_division default, minus its warning); macro averages are unweighted means over classes.
/// PerClassAccuracy is the fraction of each class's samples predicted correctly, i.e. the recall (reports call it recall).
/// </summary>
public sealed record ClassificationReport(
    int NumSamples,
    double Accuracy,
    double[] Precision,
    double[] Recall,
    double[] F1,
    int[] Support,
    int[,] Confusion)
{
    public double[] PerClassAccuracy => Recall;
    public double MacroPrecision => Precision.Average();
    public double MacroRecall => Recall.Average();
    public double MacroF1 => F1.Average();

    public static ClassificationReport Compute(int[] yTrue, int[] yPred, int numClasses)
    {
        if (yTrue.Length != yPred.Length)
            throw new ArgumentException($"yPred has {yPred.Length} labels, yTrue has {yTrue.Length}");
        if (numClasses < 1) throw new ArgumentException($"the number of classes must be positive, got {numClasses}");
        var conf = new int[numClasses, numClasses];
        int correct = 0;
        for (int i = 0; i < yTrue.Length; i++)
        {
            int t = yTrue[i], p = yPred[i];
            if ((uint)t >= (uint)numClasses) throw new ArgumentException($"yTrue[{i}] = {t} is outside 0..{numClasses - 1}");
            if ((uint)p >= (uint)numClasses) throw new ArgumentException($"yPred[{i}] = {p} is outside 0..{numClasses - 1}");
            conf[t, p]++;
            if (t == p) correct++;
        }
        var precision = new double[numClasses];
        var recall = new double[numClasses];
        var f1 = new double[numClasses];
        var support = new int[numClasses];
        for (int k = 0; k < numClasses; k++)
        {
            int tp = conf[k, k], predicted = 0, actual = 0;
            for (int j = 0; j < numClasses; j++) { predicted += conf[j, k]; actual += conf[k, j]; }
            support[k] = actual;
            precision[k] = predicted == 0 ? 0 : (double)tp / predicted;
            recall[k] = actual == 0 ? 0 : (double)tp / actual;
            f1[k] = precision[k] + recall[k] == 0 ? 0 : 2 * precision[k] * recall[k] / (precision[k] + recall[k]);
        }
        double acc = yTrue.Length == 0 ? 0 : (double)correct / yTrue.Length;
        return new ClassificationReport(yTrue.Length, acc, precision, recall, f1, support, conf);
    }

    /// <summary>A sklearn-style text table; <paramref name="names"/> label the rows (defaults to indices).</summary>
    public string ToText(IReadOnlyList<string>? names = null)
    {
        int k = Precision.Length;
        var lab = Enumerable.Range(0, k).Select(i => names is not null && i < names.Count ? names[i] : i.ToString(CultureInfo.InvariantCulture)).ToList();
        int width = Math.Max(12, lab.Max(s => s.Length) + 2);
        var sb = new StringBuilder();
        var ic = CultureInfo.InvariantCulture;
        sb.Append("".PadLeft(width)).AppendLine("  precision    recall  f1-score   support");
        for (int i = 0; i < k; i++)
            sb.Append(lab[i].PadLeft(width)).Append(string.Format(ic, "  {0,9:F4} {1,9:F4} {2,9:F4} {3,9}", Precision[i], Recall[i], F1[i], Support[i])).AppendLine();
        sb.AppendLine();
        sb.Append("accuracy".PadLeft(width)).Append(string.Format(ic, "  {0,9} {1,9} {2,9:F4} {3,9}", "", "", Accuracy, NumSamples)).AppendLine();
        sb.Append("macro avg".PadLeft(width)).Append(string.Format(ic, "  {0,9:F4} {1,9:F4} {2,9:F4} {3,9}", MacroPrecision, MacroRecall, MacroF1, NumSamples)).AppendLine();
        return sb.ToString();
    }

    /// <summary>
    /// The confusion matrix as text: a row per true class ("index name"), a column per predicted class headed by its
    /// index, so 15 classes with long names still fit a terminal.
    /// </summary>
    public string ConfusionText(IReadOnlyList<string>? names = null)
    {
        int k = Precision.Length;
        var ic = CultureInfo.InvariantCulture;
        var lab = Enumerable.Range(0, k).Select(i => $"{i.ToString(ic).PadLeft(k > 10 ? 2 : 1)} {(names is not null && i < names.Count ? names[i] : "")}".TrimEnd()).ToList();
        int width = lab.Max(s => s.Length);
        int cell = Math.Max(k - 1, NumSamples).ToString(ic).Length + 1;
        var sb = new StringBuilder();
        sb.AppendLine("confusion matrix (rows: true class, columns: predicted class)");
        sb.Append("".PadRight(width));
        for (int j = 0; j < k; j++) sb.Append(j.ToString(ic).PadLeft(cell));
        sb.AppendLine();
        for (int i = 0; i < k; i++)
        {
            sb.Append(lab[i].PadRight(width));
            for (int j = 0; j < k; j++) sb.Append(Confusion[i, j].ToString(ic).PadLeft(cell));
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
