using System.CommandLine;
using Spectre.Console;
using Tp7.Engine.Devices;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 devices`: every device found, and for each one ILGPU refuses, the reason.</summary>
static class DevicesCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print a JSON array: {device, index, name, memory_bytes, capability, usable, refused_because} per device" };
        var command = new Command("devices", "List the devices tp7 can compute on (and those it cannot, with the reason)") { json };
        command.SetHandler(parse =>
        {
            var devices = DeviceCatalog.List();
            if (parse.GetValue(json))
            {
                var doc = devices.Select(d => new
                {
                    device = d.Backend, index = d.Index, name = d.Name, memory_bytes = d.MemoryBytes, capability = d.Capability,
                    usable = d.RefusedBecause == null, refused_because = d.RefusedBecause,
                });
                Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(doc, new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
                return 0;
            }
            var table = new Table().AddColumn("--device").AddColumn("index").AddColumn("name")
                .AddColumn(new TableColumn("memory").RightAligned()).AddColumn("capability").AddColumn("status");
            foreach (var d in devices)
                table.AddRow(Markup.Escape(d.Backend), d.Index.ToString(), Markup.Escape(d.Name),
                    d.MemoryBytes > 0 ? $"{d.MemoryBytes / (1L << 20):N0} MiB" : "",
                    Markup.Escape(d.Capability),
                    d.RefusedBecause is { } why ? $"[red]refused:[/] {Markup.Escape(why)}" : "[green]usable[/]");
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
