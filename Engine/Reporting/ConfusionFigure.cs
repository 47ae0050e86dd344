using ScottPlot;

namespace Tp7.Engine.Reporting;

/// <summary>The confusion matrix as a ScottPlot heatmap: rows are true classes, columns predictions, cells coloured
/// by the fraction of the true class (so classes of different sizes compare) and labelled with counts.</summary>
public static class ConfusionFigure
{
    public static void Save(string path, int[,] confusion, IReadOnlyList<string> names, string title)
    {
        int k = names.Count;
        var frac = new double[k, k];
        for (int i = 0; i < k; i++)
        {
            double row = 0;
            for (int j = 0; j < k; j++) row += confusion[i, j];
            // Heatmap row 0 is drawn at the top: true class i sits in row i so the diagonal runs top-left to bottom-right.
            for (int j = 0; j < k; j++) frac[i, j] = row > 0 ? confusion[i, j] / row : 0;
        }
        var plt = new Plot();
        var hm = plt.Add.Heatmap(frac);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        hm.ManualRange = new ScottPlot.Range(0, 1);
        var bar = plt.Add.ColorBar(hm);
        bar.Label = "fraction of the true class";
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
            {
                if (confusion[i, j] == 0) continue;
                var t = plt.Add.Text(confusion[i, j].ToString(), j, k - 1 - i);
                t.LabelFontColor = frac[i, j] > 0.5 ? Colors.Black : Colors.White;
                t.LabelFontSize = k > 12 ? 10 : 12;
                t.LabelAlignment = Alignment.MiddleCenter;
            }
        double[] pos = Enumerable.Range(0, k).Select(i => (double)i).ToArray();
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(pos, names.ToArray());
        plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(pos, names.Reverse().ToArray());
        plt.Axes.Bottom.TickLabelStyle.Rotation = -45;
        plt.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
        plt.Axes.Bottom.MinimumSize = 120;
        plt.Axes.Left.MinimumSize = 120;
        plt.Axes.Bottom.Label.Text = "predicted";
        plt.Axes.Left.Label.Text = "true";
        plt.Title(title);
        plt.Grid.IsVisible = false;
        plt.Axes.Margins(0, 0);
        int side = Math.Max(520, 140 + 44 * k);
        var tmp = path + ".tmp.png";
        plt.SavePng(tmp, side + 140, side);
        File.Move(tmp, path, overwrite: true);
    }
}
