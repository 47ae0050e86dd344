using System.Text;
using ScottPlot;

namespace Tp7.Engine.Reporting;

/// <summary>What every report writer does with files: atomic writes, CSV fields, figures of panels side by side.</summary>
public static class ReportFiles
{
    /// <summary>Writes UTF-8 (no BOM) to a temporary file, then moves it over <paramref name="path"/>.</summary>
    public static void WriteText(string path, string text)
    {
        File.WriteAllText(path + ".tmp", text, new UTF8Encoding(false));
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>A CSV field, quoted when it holds a comma, a quote or a line break.</summary>
    public static string Csv(string s) => s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    /// <summary>Panels of <paramref name="width"/> x <paramref name="height"/> pixels side by side in one PNG, written atomically.</summary>
    public static void SavePanels(string path, int width, int height, params Plot[] panels) => SavePanelGrid(path, width, height, panels.Length, panels);

    /// <summary>Panels of <paramref name="width"/> x <paramref name="height"/> pixels, <paramref name="columns"/> to a row, in one PNG, written atomically.</summary>
    public static void SavePanelGrid(string path, int width, int height, int columns, IReadOnlyList<Plot> panels)
    {
        columns = Math.Max(1, Math.Min(columns, panels.Count));
        int rows = (panels.Count + columns - 1) / columns;
        using var surface = SkiaSharp.SKSurface.Create(new SkiaSharp.SKImageInfo(width * columns, height * rows));
        surface.Canvas.Clear(SkiaSharp.SKColors.White);
        for (int i = 0; i < panels.Count; i++)
        {
            using var image = SkiaSharp.SKImage.FromEncodedData(panels[i].GetImage(width, height).GetImageBytes());
            surface.Canvas.DrawImage(image, width * (i % columns), height * (i / columns));
        }
        using var snapshot = surface.Snapshot();
        using var data = snapshot.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        using (var f = File.Create(path + ".tmp")) data.SaveTo(f);
        File.Move(path + ".tmp", path, overwrite: true);
    }
}
