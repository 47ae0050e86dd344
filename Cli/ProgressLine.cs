using Tp7.Engine.Features;

namespace Tp7.Cli;

/// <summary>
/// A progress bar on stderr with images/s and ETA: redrawn in place on a terminal, a line every 10 % in a log.
/// </summary>
sealed class ProgressLine
{
    readonly bool interactive = !Console.IsErrorRedirected;
    string stage = "";
    int lastDecile = -1;
    DateTime lastDraw;

    public void Report(string stageName, ExtractProgress p) => Report(stageName, p, null);

    /// <param name="detail">Replaces the img/s and ETA of an extraction (e.g. loss, img/s and ETA of training).</param>
    public void Report(string stageName, ExtractProgress p, string? detail)
    {
        if (stageName != stage) { Finish(); stage = stageName; lastDecile = -1; }
        double rate = p.Seconds > 0 ? p.Done / p.Seconds : 0;
        string eta = rate > 0 && p.Done < p.Total ? TimeSpan.FromSeconds((p.Total - p.Done) / rate).ToString(@"m\:ss") : "-";
        int width = 30, filled = p.Total > 0 ? width * p.Done / p.Total : width;
        string line = $"{stage,-15} [{new string('#', filled)}{new string('.', width - filled)}] {p.Done}/{p.Total}  " + (detail ?? $"{rate,6:F1} img/s  ETA {eta}");
        if (interactive)
        {
            if ((DateTime.UtcNow - lastDraw).TotalMilliseconds < 100 && p.Done < p.Total) return;
            lastDraw = DateTime.UtcNow;
            Console.Error.Write("\r" + line);
        }
        else
        {
            int decile = p.Total > 0 ? 10 * p.Done / p.Total : 10;
            if (decile == lastDecile) return;
            lastDecile = decile;
            Console.Error.WriteLine(line);
        }
    }

    public void Finish()
    {
        if (interactive && stage != "") Console.Error.WriteLine();
        stage = "";
    }
}
