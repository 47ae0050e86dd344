using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Tp7.Engine.Model;

namespace Tp7.Cli.Commands;

/// <summary>
/// `tp7 info`: a model's graph as a table of nodes with output shapes, parameters and multiply-adds (from the ops' own
/// cost): VGG16 (optionally verifying a weights file, whose head sets the last layer's width), ResNet18 or an ONNX file.
/// </summary>
static class InfoCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print the table as JSON" };
        var size = new Option<int?>("--size") { Description = "Input height and width (default: the model's, 224; VGG16 needs at least 32)" }.AtLeast(1);
        var model = new Option<string?>("--model") { Description = "vgg16, resnet18 or PATH.onnx (default vgg16)" };
        var weights = CliCommon.Weights("Also load and verify this VGG16 weights file");
        var command = new Command("info", "Show a model's layers with output shapes, parameter counts and multiply-adds") { json, size, model, weights };
        command.SetHandler(parse =>
        {
            string choice = ModelCatalog.Check(parse.GetValue(model) ?? "vgg16");
            string? verified = null, title, notes = null;
            Tp7.Engine.Graph.Graph graph;
            int s;
            if (choice == "vgg16")
            {
                s = parse.GetValue(size) ?? 224;
                if (s < Vgg16Architecture.MinInputSize) throw new ArgumentException(Vgg16Architecture.SizeTooSmall(s));
                int classes = Vgg16Architecture.NumClasses;
                if (parse.GetValue(weights) is { } given)
                {
                    string path = WeightsLocator.Locate(given)!.Path; // a missing file is named as --weights names it
                    var w = WeightsLocator.Load(path);
                    classes = w.NumClasses;
                    verified = $"{path}: {w.ParameterCount:N0} parameters in 32 tensors, all shapes match VGG16" +
                        (classes != Vgg16Architecture.NumClasses ? $" with a {classes}-class head ({string.Join(", ", w.ClassNames ?? [])})" : "");
                }
                graph = Vgg16Graph.Build(classes);
                title = $"VGG16 (torchvision layout), input 3x{s}x{s}";
            }
            else
            {
                if (parse.GetValue(weights) != null) throw new ArgumentException($"--weights holds VGG16 weights; it does not go with --model {choice}");
                var imported = ModelCatalog.Import(choice);
                graph = imported.Graph;
                var input = graph.Inputs.Values.Single();
                s = parse.GetValue(size) ?? input[2];
                title = $"{(choice == "resnet18" ? "ResNet18" : Path.GetFileName(choice))} (ONNX opset {imported.Opset}, {imported.Producer}), input {input[1]}x{s}x{s}";
                notes = string.Create(CultureInfo.InvariantCulture,
                    $"the file holds {imported.InitializerValues:N0} initializer values; BatchNormalization folded into the convolutions before it leaves {imported.ParameterCount:N0} parameters") +
                    (choice == "resnet18" ? $"\n{ModelCatalog.ResNet18Provenance}" : "");
            }
            IReadOnlyList<LayerRow> rows;
            try { rows = ImageModel.Layers(graph, s); }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or InvalidDataException)
            {
                throw new ArgumentException($"--size {s}: {ModelCatalog.NameOf(choice)} cannot take a {s}x{s} input: {e.Message}");
            }
            bool Weighted(LayerRow l) => l.Op is "Conv" or "Linear" or "MatMul";
            long convParams = rows.Where(l => l.Op == "Conv").Sum(l => l.Parameters);
            long fcParams = rows.Where(l => l.Op is "Linear" or "MatMul").Sum(l => l.Parameters);
            long total = graph.Parameters.Sum(p => p.Shape.Elements);
            double macs = rows.Where(Weighted).Sum(l => l.Flops / 2);
            static int[] PerSample(Tp7.Engine.Graph.Shape o) => o.Dims.Skip(1).ToArray();

            if (parse.GetValue(json))
            {
                var doc = new
                {
                    model = choice,
                    input = new[] { 3, s, s },
                    layers = rows.Select(l => new
                    {
                        module = l.Node, tap = l.Tap, kind = l.Op, value = l.Value, output_shape = l.Output.Rank == 2 ? [l.Output[1], 1, 1] : PerSample(l.Output),
                        parameters = l.Parameters, macs = Weighted(l) ? l.Flops / 2 : 0, flops = l.Flops,
                    }),
                    total_parameters = total,
                    conv_parameters = convParams,
                    fc_parameters = fcParams,
                    total_macs = macs,
                    weights_verified = verified,
                };
                Console.WriteLine(JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }

            var table = new Table().Title(Markup.Escape(title))
                .AddColumn("module").AddColumn("tap").AddColumn("kind").AddColumn("output")
                .AddColumn(new TableColumn("parameters").RightAligned()).AddColumn(new TableColumn("MMAC").RightAligned());
            foreach (var l in rows)
            {
                var d = PerSample(l.Output);
                string shapeText = d.Length == 3 && d[1] == 1 && d[2] == 1 || d.Length == 1 ? $"[{d[0]}]" : $"[{string.Join(", ", d)}]";
                table.AddRow(Markup.Escape(l.Node), Markup.Escape(l.Tap), l.Op, Markup.Escape(shapeText),
                    l.Parameters > 0 ? l.Parameters.ToString("N0", CultureInfo.InvariantCulture) : "",
                    Weighted(l) && l.Flops > 0 ? (l.Flops / 2e6).ToString("N1", CultureInfo.InvariantCulture) : "");
            }
            AnsiConsole.Console.Profile.Width = Math.Max(AnsiConsole.Console.Profile.Width, 120);
            AnsiConsole.Write(table);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"total parameters: {total:N0} (convolutions {convParams:N0}, fully connected {fcParams:N0})"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"multiply-adds per image: {macs / 1e9:F2} GMAC ({2 * macs / 1e9:F1} GFLOP) in convolutions and fully connected layers"));
            if (notes != null) Console.WriteLine(notes);
            if (verified != null) Console.WriteLine($"weights verified: {verified}");
            return 0;
        });
        return command;
    }
}
