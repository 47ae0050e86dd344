using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Tp7.Engine.Svm;

/// <summary>
/// Exchange with the LIBLINEAR command-line tools (liblinear-train / liblinear-predict, version 2.x), used to
/// check our solver against the reference and to time it: the sparse text problem format and the model file.
/// </summary>
public static class LibLinearInterop
{
    /// <summary>A parsed liblinear model: weights re-ordered to sorted labels, bias split off.</summary>
    /// <param name="Labels">Labels in the file's order (liblinear orders them by first appearance in the data).</param>
    /// <param name="SortedW">(NumClassifiers, D) row-major, rows in sorted-label order; binary: one row scoring the
    /// larger label as positive (liblinear's own row scores Labels[0]; it is negated when that is the smaller label).</param>
    /// <param name="SortedBias">Bias per row: BiasScale × bias-feature weight.</param>
    public sealed record Model(string SolverType, int[] Labels, int NumFeatures, double BiasScale, double[] SortedW, double[] SortedBias);

    /// <summary>
    /// Writes rows X (N, D) and labels as "label idx:value ..." lines (1-based indices, zeros omitted).
    /// Values are written with the shortest text that parses back to the same double, so liblinear reads
    /// exactly our float32 values.
    /// </summary>
    public static void WriteProblem(string path, float[] X, int n, int d, int[] y)
    {
        Kernels.Check.Length("X", X.LongLength, (long)n * d, $"(N={n}, D={d})");
        Kernels.Check.Length("y", y.Length, n, $"(N={n})");
        var ic = CultureInfo.InvariantCulture;
        using var sw = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 20);
        var sb = new StringBuilder();
        for (int i = 0; i < n; i++)
        {
            sb.Clear();
            sb.Append(y[i].ToString(ic));
            for (int j = 0; j < d; j++)
            {
                float v = X[(long)i * d + j];
                if (v == 0) continue;
                sb.Append(' ').Append((j + 1).ToString(ic)).Append(':').Append(((double)v).ToString("R", ic));
            }
            sw.Write(sb.Append('\n'));
        }
    }

    /// <summary>Parses a liblinear model file for a problem with <paramref name="d"/> features.</summary>
    public static Model ReadModel(string path, int d)
    {
        var lines = File.ReadAllLines(path);
        string solver = "";
        int nrClass = -1, nrFeature = -1;
        double bias = -1;
        int[]? labels = null;
        int p = 0;
        var ic = CultureInfo.InvariantCulture;
        for (; p < lines.Length && lines[p].Trim() != "w"; p++)
        {
            var parts = lines[p].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            switch (parts[0])
            {
                case "solver_type": solver = parts[1]; break;
                case "nr_class": nrClass = int.Parse(parts[1], ic); break;
                case "nr_feature": nrFeature = int.Parse(parts[1], ic); break;
                case "bias": bias = double.Parse(parts[1], ic); break;
                case "label": labels = [.. parts.Skip(1).Select(s => int.Parse(s, ic))]; break;
            }
        }
        if (p == lines.Length || labels is null || nrClass < 2 || nrFeature < 0)
            throw new InvalidDataException($"{path}: not a liblinear model file (missing header fields or 'w' line)");
        if (nrFeature > d)
            throw new InvalidDataException($"{path}: model has {nrFeature} features, problem has {d}");
        int m = nrClass == 2 ? 1 : nrClass;
        int rows = nrFeature + (bias >= 0 ? 1 : 0);
        if (lines.Length - p - 1 < rows)
            throw new InvalidDataException($"{path}: {lines.Length - p - 1} weight rows, expected {rows}");
        // File layout: one line per feature (bias last), nr_w columns in the file's label order.
        var wFile = new double[rows, m];
        for (int r = 0; r < rows; r++)
        {
            var parts = lines[p + 1 + r].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != m) throw new InvalidDataException($"{path}: weight row {r} has {parts.Length} values, expected {m}");
            for (int k = 0; k < m; k++) wFile[r, k] = double.Parse(parts[k], ic);
        }
        // Re-order to sorted labels. Features beyond nr_feature never appeared (all zero): weight 0.
        int[] order = m == 1 ? [0] : [.. Enumerable.Range(0, m).OrderBy(k => labels[k])];
        var W = new double[m * d];
        var b = new double[m];
        double sign = m == 1 && labels[0] < labels[1] ? -1 : 1;
        for (int k = 0; k < m; k++)
        {
            for (int j = 0; j < nrFeature; j++) W[k * d + j] = sign * wFile[j, order[k]];
            b[k] = bias >= 0 ? sign * bias * wFile[nrFeature, order[k]] : 0;
        }
        return new Model(solver, labels, nrFeature, bias, W, b);
    }

    /// <summary>Reads liblinear-predict's output: one label per line.</summary>
    public static int[] ReadPredictions(string path) =>
        [.. File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => (int)double.Parse(l, CultureInfo.InvariantCulture))];

    /// <summary>
    /// Runs an external tool and returns its stdout; throws with the tool's stderr when it fails or is missing.
    /// </summary>
    public static string RunTool(string exe, IEnumerable<string> args, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process proc;
        try { proc = Process.Start(psi) ?? throw new InvalidOperationException($"{exe}: could not start"); }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{exe}: not found or not executable ({e.Message}); install it (e.g. apt-get install liblinear-tools python3-sklearn)", e);
        }
        using (proc)
        {
            var stdout = proc.StandardOutput.ReadToEndAsync();
            var stderr = proc.StandardError.ReadToEndAsync();
            if (!proc.WaitForExit(timeout ?? TimeSpan.FromMinutes(5)))
            {
                proc.Kill(entireProcessTree: true);
                throw new TimeoutException($"{exe} {string.Join(' ', psi.ArgumentList)}: timed out");
            }
            proc.WaitForExit();
            if (proc.ExitCode != 0)
                throw new InvalidOperationException($"{exe} {string.Join(' ', psi.ArgumentList)}: exit code {proc.ExitCode}: {stderr.Result.Trim()} {stdout.Result.Trim()}");
            return stdout.Result;
        }
    }

    /// <summary>liblinear-train arguments matching <paramref name="o"/> (quiet).</summary>
    public static string[] TrainArgs(SvmOptions o, string problem, string model) =>
    [
        "-s", o.Loss == SvmLoss.SquaredHinge ? "1" : "3",
        "-c", o.C.ToString("R", CultureInfo.InvariantCulture),
        "-B", o.BiasScale > 0 ? o.BiasScale.ToString("R", CultureInfo.InvariantCulture) : "-1",
        "-e", o.Tolerance.ToString("R", CultureInfo.InvariantCulture),
        "-q", problem, model,
    ];
}
