using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Tp7.Engine.Graph;
using Tp7.Engine.Model;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 info`: VGG16's graph as a table of nodes with shapes, parameters and FLOPs (from the ops' own cost); optionally verifies a weights file, whose head sets the last layer's width.</summary>
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
            if (s < 32) throw new ArgumentException($"--size must be >= 32 (VGG16 has five 2x2 pools), got {s}");
            string? verified = null;
            int classes = Vgg16Architecture.NumClasses;
            if (parse.GetValue(weights) is { } path)
            {
                var w = WeightsLocator.Load(path);
                classes = w.NumClasses;
                verified = $"{path}: {w.ParameterCount:N0} parameters in 32 tensors, all shapes match VGG16" +
                    (classes != Vgg16Architecture.NumClasses ? $" with a {classes}-class head ({string.Join(", ", w.ClassNames ?? [])})" : "");
            }
            // The table is the graph the executor runs (unfused, so every ReLU has its row), at batch 1.
            var graph = Vgg16Graph.Build(classes);
            var plan = new ExecutionPlan(graph, new PlanRequest(new Shape(1, 3, s, s), [graph.Output], NoFusion: true));
            var rows = plan.Graph.Nodes.Select(n =>
            {
                var op = OpRegistry.Get(n.Op);
                var ins = n.Inputs.Select(v => plan.Shapes[v]).ToList();
                var o = plan.Shapes[n.Outputs[0]];
                int[] shape = o.Rank == 4 ? [o[1], o[2], o[3]] : [o[1], 1, 1];
                long parameters = n.Inputs.Where(graph.IsParameter).Sum(v => plan.Shapes[v].Elements);
                double m = op.Cost(n, ins, [o]).Flops / 2;
                string tap = graph.Aliases.FirstOrDefault(a => a.Value == n.Name).Alias ?? n.Name;
                return (Module: n.Name, Tap: tap, Kind: n.Op, Shape: shape, Parameters: parameters, Macs: n.Op is "Conv" or "Linear" ? m : 0);
            }).ToList();
            long convParams = rows.Where(l => l.Kind == "Conv").Sum(l => l.Parameters);
            long fcParams = rows.Where(l => l.Kind == "Linear").Sum(l => l.Parameters);
            double macs = rows.Sum(l => l.Macs);

            if (parse.GetValue(json))
            {
                var doc = new
                {
                    model = "vgg16",
                    input = new[] { 3, s, s },
                    layers = rows.Select(l => new
                    {
                        module = l.Module, tap = l.Tap, kind = l.Kind, output_shape = l.Shape, parameters = l.Parameters, macs = l.Macs,
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
                double m = l.Macs;
                string shapeText = l.Shape[1] == 1 && l.Shape[2] == 1 ? $"[{l.Shape[0]}]" : $"[{string.Join(", ", l.Shape)}]";
                table.AddRow(l.Module, l.Tap, l.Kind, Markup.Escape(shapeText),
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
