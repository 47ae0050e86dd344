using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Tp7.Engine.Model;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 info`: VGG16 as a table of layers with shapes, parameters and FLOPs; optionally verifies a weights file.</summary>
static class InfoCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print the table as JSON" };
        var size = new Option<int>("--size") { Description = "Input height and width", DefaultValueFactory = _ => 224 };
        var weights = CliCommon.Weights("Also load and verify this weights file");
        var command = new Command("info", "Show VGG16's layers with output shapes, parameter counts and FLOPs") { json, size, weights };
        command.SetHandler(parse =>
        {
            int s = parse.GetValue(size);
            var rows = Vgg16Architecture.Layers;
            var shapes = Vgg16Architecture.OutputShapes(s, s);
            var inputs = shapes.Prepend(new ActShape(3, s, s)).ToArray();
            long convParams = rows.Where(l => l.Kind == LayerKind.Conv).Sum(l => l.Parameters);
            long fcParams = rows.Where(l => l.Kind == LayerKind.Linear).Sum(l => l.Parameters);
            double macs = rows.Sum(l => Vgg16Architecture.MultiplyAdds(l, inputs[l.Position], shapes[l.Position]));
            string? verified = null;
            if (parse.GetValue(weights) is { } path)
            {
                var w = WeightsLocator.Load(path);
                verified = $"{path}: {w.ParameterCount:N0} parameters in 32 tensors, all shapes match VGG16";
            }

            if (parse.GetValue(json))
            {
                var doc = new
                {
                    model = "vgg16",
                    input = new[] { 3, s, s },
                    layers = rows.Select(l => new
                    {
                        module = l.Module, tap = l.Tap, kind = l.Kind.ToString(),
                        output_shape = new[] { shapes[l.Position].C, shapes[l.Position].H, shapes[l.Position].W },
                        parameters = l.Parameters,
                        macs = Vgg16Architecture.MultiplyAdds(l, inputs[l.Position], shapes[l.Position]),
                    }),
                    total_parameters = convParams + fcParams,
                    conv_parameters = convParams,
                    fc_parameters = fcParams,
                    total_macs = macs,
                    weights_verified = verified,
                };
                Console.WriteLine(JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }

            var table = new Table().Title($"VGG16 (torchvision layout), input 3x{s}x{s}")
                .AddColumn("module").AddColumn("tap").AddColumn("kind").AddColumn("output")
                .AddColumn(new TableColumn("parameters").RightAligned()).AddColumn(new TableColumn("MMAC").RightAligned());
            foreach (var l in rows)
            {
                double m = Vgg16Architecture.MultiplyAdds(l, inputs[l.Position], shapes[l.Position]);
                table.AddRow(l.Module, l.Tap, l.Kind.ToString(), Markup.Escape(shapes[l.Position].ToString()),
                    l.Parameters > 0 ? l.Parameters.ToString("N0", CultureInfo.InvariantCulture) : "",
                    m > 0 ? (m / 1e6).ToString("N1", CultureInfo.InvariantCulture) : "");
            }
            AnsiConsole.Write(table);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"total parameters: {convParams + fcParams:N0} (convolutions {convParams:N0}, fully connected {fcParams:N0})"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"multiply-adds per image: {macs / 1e9:F2} GMAC ({2 * macs / 1e9:F1} GFLOP)"));
            if (verified != null) Console.WriteLine($"weights verified: {verified}");
            return 0;
        });
        return command;
    }
}
