"""Constant tables behind the synthetic data set: names, places, company patterns.

Plain tuples only, so that importing this module does no work. Names are common
names of each community living in Luxembourg; none of it describes a real person.
"""

from __future__ import annotations

__all__ = [
    "BIRTH_PLACES",
    "COMMUNES",
    "COMPANY_PATTERNS",
    "COMPANY_WORDS",
    "COUNTRY_NAMES",
    "CULTURE_OF",
    "NAMES",
    "NATIONALITY_WEIGHTS",
]

# fmt: off
# Share of each nationality among household heads, tuned so that, after naturalisations
# (dual nationals) and children of mixed couples, persons holding Luxembourg nationality
# come to about 53% and the main foreign communities to the published shares.
NATIONALITY_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("LUX", 37.0), ("PRT", 16.8), ("FRA", 9.4), ("ITA", 4.8), ("BEL", 3.6), ("DEU", 2.4),
    ("ESP", 1.6), ("ROU", 1.3), ("POL", 1.1), ("CPV", 1.2), ("BRA", 0.9), ("MNE", 0.9),
    ("SRB", 0.7), ("BIH", 0.4), ("NLD", 0.8), ("GBR", 0.8), ("IRL", 0.4), ("USA", 0.5),
    ("IND", 1.3), ("CHN", 0.8), ("UKR", 0.9), ("SYR", 0.6), ("ERI", 0.4), ("HUN", 0.5),
)

# Which pool of names a nationality draws from.
CULTURE_OF: dict[str, str] = {
    "LUX": "lb", "PRT": "pt", "CPV": "pt", "BRA": "pt", "FRA": "fr", "ITA": "it", "BEL": "be",
    "DEU": "de", "ESP": "es", "ROU": "ro", "POL": "pl", "MNE": "yu", "SRB": "yu", "BIH": "yu",
    "NLD": "nl", "GBR": "en", "IRL": "en", "USA": "en", "IND": "in", "CHN": "cn", "UKR": "ua",
    "SYR": "ar", "ERI": "er", "HUN": "hu",
}

# culture -> (family names, female given names, male given names)
NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "lb": (
        ("Schmit", "Muller", "Weber", "Wagner", "Hoffmann", "Thill", "Schmitz", "Kremer", "Reuter",
         "Klein", "Majerus", "Hansen", "Faber", "Kieffer", "Schroeder", "Meyer", "Welter", "Theis",
         "Goedert", "Becker", "Kayser", "Steffen", "Lentz", "Feltgen", "Bettendorf", "Wirtz", "Ries",
         "Schiltz", "Pesch", "Kemp", "Hilbert", "Mersch", "Jacoby", "Frieden", "Bausch", "Wiltzius",
         "Reding", "Hemmen", "Origer", "Weis", "Back", "Gloden", "Konsbruck", "Flammang", "Thinnes"),
        ("Anne", "Marie", "Carole", "Sandra", "Nathalie", "Michèle", "Josée", "Lena", "Mia", "Emma",
         "Charlotte", "Léa", "Sophie", "Claudine", "Nicole", "Martine", "Danielle", "Jacqueline",
         "Lynn", "Laura", "Tessy", "Jil", "Sarah", "Anouk", "Cathy", "Monique", "Liliane", "Elise"),
        ("Jean", "Marc", "Paul", "Luc", "Claude", "Romain", "Gilles", "Tom", "Ben", "Max", "Guy",
         "Jos", "Fernand", "Henri", "Mathis", "Noah", "Pit", "Yves", "Carlo", "Patrick", "Georges",
         "Raymond", "Nico", "Joé", "Laurent", "Steve", "Jeff", "Marco", "Serge", "Charel"),
    ),
    "pt": (
        ("Da Silva", "Pereira", "Dos Santos", "Ferreira", "Rodrigues", "Gonçalves", "Fernandes",
         "Martins", "Lopes", "Alves", "Oliveira", "Costa", "Ribeiro", "Carvalho", "Teixeira",
         "Monteiro", "Sousa", "Mendes", "Pinto", "Marques", "Fonseca", "Tavares", "Moreira"),
        ("Maria", "Ana", "Sofia", "Beatriz", "Inês", "Catarina", "Rita", "Joana", "Mariana", "Sara",
         "Fátima", "Cristina", "Paula", "Sandra", "Daniela", "Carla", "Vanessa", "Patrícia"),
        ("João", "José", "António", "Manuel", "Carlos", "Paulo", "Rui", "Tiago", "Diogo", "Pedro",
         "Nuno", "Ricardo", "Bruno", "Hugo", "Fernando", "Luís", "Miguel", "Sérgio", "Rafael"),
    ),
    "fr": (
        ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
         "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Roux", "Fournier", "Girard", "Bonnet",
         "Mercier", "Lambert", "Gauthier", "Muller", "Schneider", "Perrin", "Colin"),
        ("Julie", "Céline", "Aurélie", "Élodie", "Camille", "Chloé", "Manon", "Émilie", "Isabelle",
         "Sandrine", "Stéphanie", "Virginie", "Caroline", "Audrey", "Mélanie", "Clara", "Inès"),
        ("Julien", "Nicolas", "Pierre", "Antoine", "Mathieu", "Sébastien", "Hugo", "Thomas",
         "Alexandre", "Romain", "Jérôme", "Frédéric", "Christophe", "Olivier", "Lucas", "Louis"),
    ),
    "it": (
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
         "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Lombardi", "Moretti",
         "Barbieri", "Fontana", "Santoro", "Rinaldi", "Caruso"),
        ("Giulia", "Francesca", "Chiara", "Sara", "Elena", "Paola", "Valentina", "Alessia",
         "Federica", "Silvia", "Laura", "Martina", "Giorgia", "Roberta"),
        ("Giuseppe", "Marco", "Luca", "Andrea", "Francesco", "Alessandro", "Matteo", "Lorenzo",
         "Davide", "Stefano", "Roberto", "Giovanni", "Antonio", "Salvatore", "Fabio"),
    ),
    "be": (
        ("Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens",
         "Wouters", "Dubois", "Lambert", "Dupont", "Renard", "Collard", "Lejeune", "Leclercq",
         "Gérard", "François", "Simon", "Hermans", "Piron", "Jacquemin"),
        ("Laurence", "Sarah", "Pauline", "Valérie", "Els", "Sofie", "Anne-Sophie", "Marie",
         "Justine", "Nathalie", "Charlotte", "Hélène", "Delphine"),
        ("Thibault", "Maxime", "Arnaud", "Olivier", "Bart", "Wim", "Pieter", "Benoît", "Quentin",
         "Cédric", "Damien", "Geoffrey", "Xavier", "Tom"),
    ),
    "de": (
        ("Müller", "Schmidt", "Schneider", "Fischer", "Meyer", "Weber", "Wagner", "Becker", "Schulz",
         "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Zimmermann",
         "Braun", "Krüger", "Hartmann", "Lange"),
        ("Katharina", "Julia", "Laura", "Anna", "Sabine", "Petra", "Stefanie", "Claudia", "Lisa",
         "Birgit", "Susanne", "Hannah", "Lea"),
        ("Lukas", "Jonas", "Felix", "Stefan", "Andreas", "Thomas", "Michael", "Christian", "Daniel",
         "Tobias", "Jan", "Markus", "Florian", "Matthias"),
    ),
    "es": (
        ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
         "Gómez", "Ruiz", "Díaz", "Moreno", "Álvarez", "Romero"),
        ("Lucía", "María", "Carmen", "Laura", "Marta", "Paula", "Elena", "Cristina", "Raquel"),
        ("Javier", "Carlos", "David", "Daniel", "Alejandro", "Pablo", "Sergio", "Jorge", "Álvaro"),
    ),
    "ro": (
        ("Popescu", "Ionescu", "Popa", "Stan", "Dumitru", "Munteanu", "Constantin", "Stoica",
         "Matei", "Ciobanu", "Marin", "Dinu"),
        ("Andreea", "Elena", "Ioana", "Maria", "Alexandra", "Mihaela", "Cristina", "Raluca"),
        ("Andrei", "Alexandru", "Mihai", "Ion", "Gabriel", "Adrian", "Bogdan", "Florin", "Radu"),
    ),
    "pl": (
        ("Nowak", "Wójcik", "Kowalczyk", "Mazur", "Krawczyk", "Zając", "Król", "Wieczorek",
         "Pawlak", "Michalak", "Dudek", "Walczak"),
        ("Anna", "Katarzyna", "Magdalena", "Agnieszka", "Joanna", "Monika", "Małgorzata", "Ewa"),
        ("Piotr", "Krzysztof", "Tomasz", "Paweł", "Marcin", "Michał", "Łukasz", "Jakub", "Adam"),
    ),
    "yu": (
        ("Hodžić", "Kovačević", "Marković", "Petrović", "Jovanović", "Nikolić", "Delić", "Husić",
         "Muratović", "Dedić", "Begović", "Šabotić", "Zejnilović", "Mujić"),
        ("Amra", "Jelena", "Milica", "Selma", "Ana", "Lejla", "Maja", "Emina", "Sanela"),
        ("Adnan", "Amir", "Nikola", "Marko", "Edin", "Stefan", "Emir", "Miloš", "Senad", "Dragan"),
    ),
    "nl": (
        ("de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer",
         "de Boer", "Mulder", "Bos", "Vos"),
        ("Sanne", "Lotte", "Anouk", "Femke", "Eva", "Marloes", "Ilse", "Fleur"),
        ("Daan", "Sem", "Bram", "Joost", "Ruben", "Thijs", "Niels", "Wouter", "Sander"),
    ),
    "en": (
        ("Smith", "Jones", "Williams", "Brown", "Taylor", "Davies", "Murphy", "Kelly", "O'Brien",
         "Walsh", "Johnson", "Miller", "Wilson", "Clarke"),
        ("Emily", "Sarah", "Rachel", "Emma", "Hannah", "Aoife", "Siobhan", "Jennifer", "Kate"),
        ("James", "David", "Michael", "John", "Daniel", "Sean", "Patrick", "Matthew", "Robert"),
    ),
    "in": (
        ("Sharma", "Patel", "Iyer", "Nair", "Reddy", "Gupta", "Singh", "Kumar", "Rao", "Menon",
         "Joshi", "Mehta"),
        ("Priya", "Ananya", "Divya", "Kavya", "Lakshmi", "Neha", "Pooja", "Shreya", "Meera"),
        ("Arjun", "Rahul", "Vikram", "Aditya", "Rohan", "Karthik", "Sanjay", "Anil", "Ravi"),
    ),
    "cn": (
        ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun"),
        ("Mei", "Xiaoyan", "Jing", "Li Na", "Hui", "Ying", "Xin", "Fang", "Lan"),
        ("Wei", "Jun", "Hao", "Lei", "Qiang", "Tao", "Bo", "Ming", "Yong", "Jian"),
    ),
    "ua": (
        ("Kovalenko", "Shevchenko", "Bondarenko", "Tkachenko", "Melnyk", "Boyko", "Kravchenko",
         "Oliynyk", "Lysenko", "Marchenko", "Rudenko", "Savchenko"),
        ("Olena", "Iryna", "Oksana", "Natalia", "Tetiana", "Yulia", "Kateryna", "Svitlana"),
        ("Oleksandr", "Andriy", "Dmytro", "Serhiy", "Mykola", "Volodymyr", "Taras", "Bohdan"),
    ),
    "ar": (
        ("Al-Hussein", "Haddad", "Khalil", "Darwish", "Aziz", "Hamdan", "Mansour", "Nasser",
         "Saleh", "Qassem"),
        ("Fatima", "Layla", "Rania", "Nour", "Hiba", "Amal", "Yasmin", "Maya"),
        ("Ahmad", "Mohammad", "Omar", "Khaled", "Yousef", "Ali", "Hassan", "Samer", "Rami"),
    ),
    "er": (
        ("Tesfay", "Ghebremariam", "Habte", "Kidane", "Berhane", "Tekle", "Haile", "Gebru"),
        ("Selam", "Helen", "Senait", "Meron", "Rahel", "Saba", "Mahlet"),
        ("Yonas", "Daniel", "Samuel", "Filmon", "Robel", "Dawit", "Tesfalem"),
    ),
    "hu": (
        ("Nagy", "Kovács", "Tóth", "Szabó", "Horváth", "Varga", "Kiss", "Molnár", "Németh"),
        ("Zsófia", "Katalin", "Eszter", "Anna", "Réka", "Judit", "Krisztina"),
        ("László", "Gábor", "Zoltán", "Péter", "Balázs", "Attila", "Tamás", "Bence"),
    ),
}

# nationality -> places of birth abroad ("LUX": maternity hospitals in Luxembourg)
BIRTH_PLACES: dict[str, tuple[str, ...]] = {
    "LUX": ("Luxembourg", "Esch-sur-Alzette", "Ettelbruck", "Dudelange", "Wiltz", "Niederkorn"),
    "PRT": ("Porto", "Lisboa", "Braga", "Viseu", "Guarda", "Chaves", "Aveiro", "Vila Real"),
    "CPV": ("Praia", "Mindelo", "Assomada", "Santa Maria"),
    "BRA": ("São Paulo", "Belo Horizonte", "Rio de Janeiro", "Curitiba"),
    "FRA": ("Metz", "Thionville", "Nancy", "Paris", "Longwy", "Strasbourg", "Lyon", "Hayange"),
    "ITA": ("Roma", "Milano", "Napoli", "Foggia", "Torino", "Bari", "Palermo", "Gubbio"),
    "BEL": ("Arlon", "Liège", "Bruxelles", "Namur", "Bastogne", "Virton", "Antwerpen", "Gent"),
    "DEU": ("Trier", "Saarbrücken", "Köln", "Bitburg", "Frankfurt am Main", "München", "Berlin"),
    "ESP": ("Madrid", "Barcelona", "Sevilla", "Valencia", "Vigo"),
    "ROU": ("București", "Cluj-Napoca", "Iași", "Timișoara"),
    "POL": ("Warszawa", "Kraków", "Wrocław", "Gdańsk", "Poznań"),
    "MNE": ("Podgorica", "Bijelo Polje", "Rožaje", "Berane"),
    "SRB": ("Beograd", "Novi Sad", "Niš"),
    "BIH": ("Sarajevo", "Bihać", "Tuzla"),
    "NLD": ("Amsterdam", "Rotterdam", "Utrecht", "Maastricht"),
    "GBR": ("London", "Manchester", "Edinburgh", "Bristol"),
    "IRL": ("Dublin", "Cork", "Galway"),
    "USA": ("New York", "Chicago", "Boston", "San Francisco"),
    "IND": ("Mumbai", "Bengaluru", "Chennai", "New Delhi", "Pune"),
    "CHN": ("Beijing", "Shanghai", "Wuhan", "Chengdu"),
    "UKR": ("Kyiv", "Lviv", "Kharkiv", "Odesa"),
    "SYR": ("Damascus", "Aleppo", "Homs"),
    "ERI": ("Asmara", "Keren", "Massawa"),
    "HUN": ("Budapest", "Debrecen", "Szeged"),
}

# (commune, ((locality, first postcode, last postcode), ...), streets, weight)
COMMUNES: tuple[tuple[str, tuple[tuple[str, int, int], ...], tuple[str, ...], float], ...] = (
    ("Luxembourg", (("Luxembourg", 1009, 2999),),
     ("Grand-Rue", "Avenue de la Liberté", "Boulevard Royal", "Rue de Hollerich", "Route d'Arlon",
      "Avenue Pasteur", "Rue de Strasbourg", "Rue du Fort Neipperg", "Rue de Bonnevoie",
      "Avenue Gaston Diderich", "Rue des Aubépines", "Rue Auguste Charles", "Val Sainte-Croix",
      "Rue de Trèves", "Rue de Neudorf", "Rue de Mühlenbach", "Avenue du X Septembre",
      "Rue Albert Unden", "Boulevard de la Pétrusse", "Rue de Gasperich", "Rue de Cessange",
      "Rue Michel Rodange", "Côte d'Eich", "Rue Principale"), 19.0),
    ("Esch-sur-Alzette", (("Esch-sur-Alzette", 4004, 4398),),
     ("Rue de l'Alzette", "Boulevard J.F. Kennedy", "Rue du Canal", "Rue de Luxembourg",
      "Boulevard Prince Henri", "Rue Dicks", "Avenue de la Gare", "Rue du Brill",
      "Rue Emile Mayrisch", "Boulevard Grande-Duchesse Charlotte"), 5.8),
    ("Differdange", (("Differdange", 4501, 4599), ("Oberkorn", 4601, 4640),
                     ("Niederkorn", 4650, 4699)),
     ("Rue Émile Mark", "Avenue de la Liberté", "Rue Pierre Gansen", "Grand-Rue",
      "Rue de Soleuvre", "Rue Michel Rodange"), 4.5),
    ("Dudelange", (("Dudelange", 3401, 3490),),
     ("Avenue Grande-Duchesse Charlotte", "Rue du Commerce", "Route de Kayl", "Rue de la Libération",
      "Rue du Parc"), 3.4),
    ("Pétange", (("Pétange", 4701, 4760), ("Rodange", 4801, 4850), ("Lamadelaine", 4870, 4890)),
     ("Route de Longwy", "Rue de Luxembourg", "Avenue de la Gare", "Rue Neuve"), 3.0),
    ("Sanem", (("Belvaux", 4401, 4440), ("Soleuvre", 4441, 4460), ("Ehlerange", 4390, 4395)),
     ("Rue d'Esch", "Route d'Esch", "Rue Michel Rodange", "Rue des Champs"), 2.8),
    ("Hesperange", (("Hesperange", 5800, 5830), ("Howald", 5831, 5860), ("Alzingen", 5861, 5880),
                    ("Fentange", 5881, 5899)),
     ("Route de Thionville", "Rue de Gasperich", "Rue de Bettembourg", "Rue des Jardins"), 2.6),
    ("Bettembourg", (("Bettembourg", 3201, 3260), ("Noertzange", 3270, 3280)),
     ("Route de Luxembourg", "Rue de la Gare", "Rue du Château", "Rue de Mondorf"), 1.8),
    ("Schifflange", (("Schifflange", 3801, 3899),),
     ("Avenue de la Libération", "Rue de Drogenbach", "Rue Denis Netgen"), 1.7),
    ("Ettelbruck", (("Ettelbruck", 9001, 9099),),
     ("Grand-Rue", "Avenue J.F. Kennedy", "Rue de Warken", "Avenue Salentiny"), 1.5),
    ("Diekirch", (("Diekirch", 9201, 9299),),
     ("Esplanade", "Rue de Stavelot", "Route d'Ettelbruck", "Rue du Marché"), 1.1),
    ("Wiltz", (("Wiltz", 9501, 9590),),
     ("Grand-Rue", "Rue du Château", "Avenue de la Gare", "Rue de Winseler"), 1.0),
    ("Echternach", (("Echternach", 6401, 6499),),
     ("Rue de la Gare", "Place du Marché", "Route de Luxembourg", "Rue de la Montagne"), 0.9),
    ("Remich", (("Remich", 5501, 5580),),
     ("Route du Vin", "Esplanade", "Rue de la Gare", "Rue de Macher"), 0.6),
    ("Strassen", (("Strassen", 8001, 8049),),
     ("Route d'Arlon", "Rue des Romains", "Rue du Kiem", "Rue des Prés"), 1.3),
    ("Bertrange", (("Bertrange", 8050, 8089),),
     ("Rue de Luxembourg", "Rue du Chemin de Fer", "Route de Longwy"), 1.3),
    ("Mamer", (("Mamer", 8201, 8299), ("Capellen", 8301, 8399)),
     ("Route d'Arlon", "Rue du Commerce", "Rue de Holzem"), 1.3),
    ("Mersch", (("Mersch", 7501, 7599),),
     ("Rue de la Gare", "Rue Principale", "Route de Luxembourg"), 1.4),
    ("Mondorf-les-Bains", (("Mondorf-les-Bains", 5601, 5699),),
     ("Avenue des Bains", "Route de Remich", "Rue du Moulin"), 0.8),
    ("Kayl", (("Kayl", 3601, 3650), ("Tétange", 3651, 3699)),
     ("Rue de Dudelange", "Rue de Noertzange", "Rue Principale"), 1.0),
    ("Käerjeng", (("Bascharage", 4901, 4950), ("Clemency", 4960, 4970), ("Hautcharage", 4975, 4999)),
     ("Avenue de Luxembourg", "Rue de la Continentale", "Rue de l'Eglise"), 1.2),
    ("Walferdange", (("Walferdange", 7201, 7230), ("Helmsange", 7231, 7250),
                     ("Bereldange", 7251, 7299)),
     ("Route de Diekirch", "Rue de l'Eglise", "Rue des Prés"), 1.1),
    ("Grevenmacher", (("Grevenmacher", 6701, 6799),),
     ("Route de Trèves", "Rue de Luxembourg", "Rue de la Moselle"), 0.8),
    ("Junglinster", (("Junglinster", 6101, 6199),),
     ("Route de Luxembourg", "Rue Hiel", "Rue de Bourglinster"), 1.0),
    ("Steinfort", (("Steinfort", 8401, 8499),),
     ("Route d'Arlon", "Rue de Hagen", "Rue de Kleinbettingen"), 0.8),
    ("Clervaux", (("Clervaux", 9701, 9799),),
     ("Grand-Rue", "Montée du Château", "Rue de Marnach"), 0.6),
)

# Words for company names that sound local.
COMPANY_WORDS: tuple[str, ...] = (
    "Alzette", "Moselle", "Sûre", "Ardennes", "Kirchberg", "Grund", "Pétrusse", "Mullerthal",
    "Minett", "Clausen", "Oesling", "Gutland", "Attert", "Eisch", "Belval", "Cloche d'Or",
    "Benelux", "Grand-Duché", "Bock", "Kockelscheuer", "Vauban", "Schuman", "Europa", "Nordstad",
)

# (pattern, NACE codes, allowed legal forms); {name} is a family name, {word} a local word.
COMPANY_PATTERNS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("{word} Software", ("62.01", "62.02"), ("SARL", "SA", "SARLS")),
    ("{word} IT Consulting", ("62.02", "70.22"), ("SARL", "SARLS")),
    ("{word} Capital", ("64.20",), ("SA", "SCA", "SE")),
    ("{word} Investments", ("64.20", "66.30"), ("SA", "SCSP", "SCS")),
    ("{word} Fund Partners", ("66.30",), ("SCSP", "SCS", "SA")),
    ("{word} Real Estate", ("68.10", "68.20"), ("SA", "SARL", "SCSP")),
    ("Immobilière {word}", ("68.10", "68.31"), ("SARL", "SA")),
    ("Constructions {name}", ("41.20", "43.99"), ("SARL", "SA")),
    ("{name} & Fils", ("43.21", "43.22"), ("SARL", "SNC")),
    ("Électricité {name}", ("43.21",), ("SARL", "SARLS")),
    ("Boulangerie-Pâtisserie {name}", ("10.71", "47.24"), ("SARL", "SARLS")),
    ("Garage {name}", ("45.20", "45.11"), ("SARL", "SA")),
    ("Café {word}", ("56.30",), ("SARLS", "SARL", "SNC")),
    ("Restaurant {word}", ("56.10",), ("SARL", "SARLS")),
    ("Fiduciaire {name}", ("69.20", "70.22"), ("SARL", "SA")),
    ("Transports {name}", ("49.41",), ("SARL", "SA")),
    ("Cabinet Médical {word}", ("86.21",), ("SARL", "SC")),
    ("Salon {name}", ("96.02",), ("SARLS", "SARL")),
    ("{word} Logistics", ("52.29", "49.41"), ("SA", "SARL")),
    ("{word} Energy", ("35.11", "43.21"), ("SA", "SC")),
    ("Coopérative Agricole {word}", ("01.11", "46.21"), ("SC",)),
    ("{word} Consulting Partners", ("70.22",), ("SARL", "SARLS", "SCS")),
)

# nationality -> country name in French, as printed after a place of birth abroad
COUNTRY_NAMES: dict[str, str] = {
    "LUX": "Luxembourg", "PRT": "Portugal", "CPV": "Cap-Vert", "BRA": "Brésil", "FRA": "France",
    "ITA": "Italie", "BEL": "Belgique", "DEU": "Allemagne", "ESP": "Espagne", "ROU": "Roumanie",
    "POL": "Pologne", "MNE": "Monténégro", "SRB": "Serbie", "BIH": "Bosnie-Herzégovine",
    "NLD": "Pays-Bas", "GBR": "Royaume-Uni", "IRL": "Irlande", "USA": "États-Unis", "IND": "Inde",
    "CHN": "Chine", "UKR": "Ukraine", "SYR": "Syrie", "ERI": "Érythrée", "HUN": "Hongrie",
}
# fmt: on
